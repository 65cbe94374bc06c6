"""What the sandbox's WeCom keeps of customer moments (the jobs, the moments made, who posted, reactions),
and what happens in members' and customers' clients that Siyu cannot see: a member posting a corp moment
they were asked to, a customer (or a colleague) liking or commenting, a member posting a moment of their own.
The endpoints over it are ``bot.sandbox.api.moments``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from bot.sandbox.corp import ApiError, FakeCorp

Body = dict[str, Any]

#: a job is done after this many polls, or this many seconds of the corp's clock
POLLS_TO_FINISH = 2
JOB_SECONDS = 1.0


@dataclass
class Job:
    jobid: str
    created: float
    moment: Body  # as get_moment_list shows it once the job is done
    result: Body
    polls: int = 0
    done: bool = False


@dataclass
class Post:
    """A corp moment once WeCom made it: who was asked, who may see it per member, who posted, reactions."""

    moment_id: str
    visible: dict[str, list[str]]  # sender -> the external_userids it is meant for (senders × tags)
    published: dict[str, float] = field(default_factory=dict)  # sender -> when they posted it
    seen: dict[str, list[str]] = field(default_factory=dict)  # sender -> who could see it when posted
    comments: dict[str, list[Body]] = field(default_factory=dict)  # sender -> comment_list items
    likes: dict[str, list[Body]] = field(default_factory=dict)  # sender -> like_list items
    cancelled: bool = False


@dataclass
class Ledger:
    jobs: dict[str, Job] = field(default_factory=dict)
    moments: list[Body] = field(default_factory=list)  # done, in creation order (members' own ones too)
    created: list[float] = field(default_factory=list)  # add_moment_task times, for the rate limit
    posts: dict[str, Post] = field(default_factory=dict)  # corp moments by moment_id, once their job is done
    pending: dict[str, Post] = field(default_factory=dict)  # by jobid, until the job is done


_LEDGERS: WeakKeyDictionary[FakeCorp, Ledger] = WeakKeyDictionary()


def ledger(corp: FakeCorp) -> Ledger:
    if corp not in _LEDGERS:
        _LEDGERS[corp] = Ledger()
    return _LEDGERS[corp]


def settle(corp: FakeCorp, job: Job) -> None:
    if not job.done and (job.polls >= POLLS_TO_FINISH or corp.clock() - job.created >= JOB_SECONDS):
        job.done = True
        counts = ledger(corp)
        counts.moments.append(job.moment)
        post = counts.pending.pop(job.jobid)
        counts.posts[post.moment_id] = post


def post_of(corp: FakeCorp, body: Body) -> Post:
    """The corp moment ``body`` names: 41059 without a moment_id, 41060 for one WeCom does not know (or a
    member's own moment: these reads are for corp moments)."""
    if not body.get("moment_id"):
        raise ApiError(41059, "missing moment_id")
    counts = ledger(corp)
    for job in list(counts.jobs.values()):
        settle(corp, job)
    post = counts.posts.get(str(body["moment_id"]))
    if post is None:
        raise ApiError(41060, "invalid moment id")
    return post


def post_moment(corp: FakeCorp, moment_id: str, userid: str) -> list[str]:
    """The member posts the corp moment they were asked to: the customers it was meant for who are still
    theirs can see it (returned). Refused once cancelled (doc 97612) or for a member not asked."""
    with corp.lock:
        post = post_of(corp, {"moment_id": moment_id})
        if userid not in post.visible:
            raise ApiError(41061, "moment not posted by this userid")
        if userid in post.published:
            return post.seen[userid]
        if post.cancelled:
            raise ApiError(41060, "the moment task was cancelled")
        post.published[userid] = corp.clock()
        post.seen[userid] = [
            e
            for e in post.visible[userid]
            if (c := corp.contacts.get(e)) is not None
            and userid in c.follows
            and not c.follows[userid].deleted_by_customer
        ]
        return post.seen[userid]


def react_to_moment(corp: FakeCorp, moment_id: str, userid: str, who: str, kind: str = "like") -> None:
    """A customer (an external_userid) or a colleague (a userid) likes or comments on ``userid``'s post."""
    with corp.lock:
        post = post_of(corp, {"moment_id": moment_id})
        if userid not in post.published:
            raise ApiError(41062, "corp moment not yet posted by this userid")
        item = {"userid" if who in corp.users else "external_userid": who, "create_time": int(corp.clock())}
        (post.likes if kind == "like" else post.comments).setdefault(userid, []).append(item)


def post_own_moment(corp: FakeCorp, userid: str, text: str, kind: str = "") -> str:
    """A member posts a moment of their own (create_type 1, with its creator), listed by get_moment_list."""
    with corp.lock:
        moment_id = corp.new_id("mom")
        row: Body = {
            "moment_id": moment_id,
            "creator": userid,
            "create_time": int(corp.clock()),
            "create_type": 1,
            "visible_type": 1,
            "text": {"content": text},
        }
        if kind == "image":
            row["image"] = [{"media_id": corp.new_id("img")}]
        elif kind == "link":
            row["link"] = {"title": text[:20], "url": "https://example.com/"}
        ledger(corp).moments.append(row)
        return moment_id


def someone_posts_or_reacts(corp: FakeCorp, rng: random.Random) -> str | None:
    """A member posts a corp moment waiting in their client, or a customer who can see a posted one likes or
    comments on it (WeCom calls nothing back: Siyu polls). What happened, for the log; None for nothing."""
    posts = ledger(corp).posts
    with corp.lock:
        waiting = sorted((m, u) for m, p in posts.items() if not p.cancelled for u in p.visible if u not in p.published)
        seen = sorted((m, u, e) for m, p in posts.items() for u, es in p.seen.items() for e in es)
    if not waiting and not seen:
        return None
    if waiting and (not seen or rng.random() < 0.5):
        moment_id, userid = rng.choice(waiting)
        return f"{userid} posted moment {moment_id} to {len(post_moment(corp, moment_id, userid))}"
    moment_id, userid, who = rng.choice(seen)
    kind = rng.choice(["like", "like", "comment"])
    react_to_moment(corp, moment_id, userid, who, kind)
    return f"a customer left a {kind} on {userid}'s moment"
