/* What the customer will see, as the operator types: every [data-preview-for] box shows the text of its
   textarea in a chat bubble with the variables filled for a sample customer, a card per attachment chosen,
   and the byte (or, for a moment, character) and attachment counts against WeCom's limits (red when over,
   before submit). */
(function () {
  "use strict";
  const samples = JSON.parse(document.getElementById("preview-samples").textContent);
  const encoder = new TextEncoder();

  function attachments(box) {
    const names = [];
    (box.dataset.attachmentsFrom || "").split(",").filter(Boolean).forEach(function (id) {
      const field = document.getElementById(id);
      if (!field) return;
      if (field.tagName === "SELECT") {
        Array.from(field.selectedOptions).forEach(function (o) { names.push(o.textContent); });
      } else if (field.type === "file") {
        Array.from(field.files || []).forEach(function (f) { names.push(f.name); });
      } else if (field.value.trim()) {
        names.push(field.value.trim());
      }
    });
    return names;
  }

  function render(box) {
    const source = document.getElementById(box.dataset.previewFor);
    const text = source.value.replace(/\{(customer_name|staff_name|store_name)\}/g, function (_m, name) {
      return samples[name];
    });
    const bubble = box.querySelector(".bubble");
    bubble.textContent = text;
    bubble.hidden = !text;
    const cards = box.querySelector(".cards-preview");
    cards.textContent = "";
    const picked = attachments(box);
    picked.forEach(function (name) {
      const card = document.createElement("div");
      card.className = "attachment-card";
      card.textContent = name;
      cards.appendChild(card);
    });
    // A moment's limit is in characters (code points, as the server counts them), a message's in bytes.
    const chars = Boolean(box.dataset.maxChars);
    const bytes = chars ? Array.from(source.value.trim()).length : encoder.encode(source.value).length;
    const maxBytes = Number(chars ? box.dataset.maxChars : box.dataset.maxBytes);
    const maxItems = Number(box.dataset.maxAttachments);
    const counter = box.querySelector(".limits");
    counter.querySelector(".bytes").textContent = bytes + " / " + maxBytes;
    counter.querySelector(".items").textContent = picked.length + " / " + maxItems;
    const over = bytes > maxBytes || picked.length > maxItems;
    counter.classList.toggle("over", over);
    box.dataset.bytes = bytes;
    box.dataset.attachments = picked.length;
  }

  document.querySelectorAll("[data-preview-for]").forEach(function (box) {
    const update = function () { render(box); };
    document.getElementById(box.dataset.previewFor).addEventListener("input", update);
    (box.dataset.attachmentsFrom || "").split(",").filter(Boolean).forEach(function (id) {
      const field = document.getElementById(id);
      if (field) { field.addEventListener("change", update); field.addEventListener("input", update); }
    });
    update();
  });
})();
