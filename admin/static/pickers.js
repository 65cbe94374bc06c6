/* Siyu's pickers: every <select data-picker> becomes a searchable picker (Tom Select, vendored under
   static/vendor/tom-select). Suggestions come from the server as the user types (scoped to them there); the
   chosen ones are chips; a "whole store" or "tag group" suggestion adds all its members or tags. Without this
   script the plain select and the paste box still post, and the server checks them the same way. */
(function () {
  "use strict";
  const csrf = document.querySelector("meta[name=csrf-token]");
  const texts = JSON.parse(document.getElementById("picker-texts").textContent);

  function fetchJSON(url, options) {
    return fetch(url, Object.assign({credentials: "same-origin", headers: {"Accept": "application/json"}}, options || {}))
      .then(function (r) { return r.json(); });
  }

  function enhance(select) {
    const url = select.dataset.searchUrl;
    const multiple = select.multiple;
    const picker = new TomSelect(select, {
      plugins: multiple ? ["remove_button", "clear_button"] : [],
      valueField: "value",
      labelField: "label",
      searchField: ["label"],
      maxOptions: 60,
      hidePlaceholder: true,
      placeholder: texts.placeholder,
      loadThrottle: 150,
      closeAfterSelect: !multiple,
      shouldLoad: function () { return true; },
      load: function (query, callback) {
        fetchJSON(url + "?q=" + encodeURIComponent(query)).then(function (j) {
          // An answer to an older text (the first suggestions arriving after one typed) is not shown.
          callback(query === picker.inputValue() ? j.results : []);
        }).catch(function () { callback(); });
      },
      render: {
        option: function (data, escape) {
          return '<div class="' + (data.shortcut ? "shortcut" : "") + '">' + escape(data.label) + "</div>";
        },
        no_results: function () { return '<div class="no-results">' + texts.none + "</div>"; },
        loading: function () { return '<div class="loading">' + texts.loading + "</div>"; },
      },
      onItemAdd: function (value) {
        const option = this.options[value];
        if (!option || !option.shortcut) return;
        // A shortcut stands for many: it is replaced by the members or tags it names.
        this.removeItem(value, true);
        this.removeOption(value, true);
        this.setTextboxValue("");
        fetchJSON(url + "?expand=" + encodeURIComponent(value)).then(function (j) {
          j.results.forEach(function (o) { picker.addOption(o); picker.addItem(o.value, true); });
          picker.refreshItems();
          select.dispatchEvent(new Event("change", {bubbles: true}));
        });
      },
    });
    picker.wrapper.dataset.pickerFor = select.id;
    // Enter in a picker picks the highlighted suggestion (Tom Select's own handler, on the input, runs
    // first); with none highlighted yet (the answer still on its way) it must not submit a half-filled form.
    picker.wrapper.addEventListener("keydown", function (e) {
      if (e.key === "Enter") e.preventDefault();
    });
    // A new search each time: suggestions are the server's answer to what is typed now.
    picker.on("type", function () { picker.clearOptions(); });
  }

  function checkButton(area) {
    const kind = document.getElementById(area.dataset.pasteFor).dataset.picker;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "plain paste-check";
    button.textContent = texts.check;
    const report = document.createElement("div");
    report.className = "muted paste-report";
    report.id = area.id + "_report";
    area.after(button, report);
    button.addEventListener("click", function () {
      const body = new FormData();
      body.append("ids", area.value);
      fetchJSON(area.dataset.checkUrl, {method: "POST", body: body, headers: {"X-CSRFToken": csrf ? csrf.content : ""}})
        .then(function (j) {
          report.textContent = j.error || j.message;
          report.classList.toggle("error", Boolean(j.error || j.unknown_count));
          report.dataset.known = j.known;
          report.dataset.unknown = j.unknown_count || 0;
        });
    });
    return kind;
  }

  document.querySelectorAll("select[data-picker]").forEach(enhance);
  // Pages that add pickers later (the segment builder's conditions) enhance them with this.
  window.siyuPickers = {enhance: enhance};
  document.querySelectorAll("textarea[data-paste-for]").forEach(checkButton);
})();
