"""Block Kit for ``/ml-config``: the channel settings modal, reading what was submitted, and
the note that confirms it. Pure functions.

The modal offers the knowledge base's sources as a multi-select. Slack allows 100 options
and 150 characters per option value, while a source can be a long path or URL: each
option's value is a digest of its source (``source_option``), resolved on submission against
the sources that exist then (and those the channel already had). A value that resolves
to nothing is refused: storing fewer sources than were chosen would widen what the
channel may cite.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from knowledge.channels import MAX_CONFIDENCE, MAX_EXPERTS, MAX_SOURCES, ChannelConfig

from .blocks import _section, mention

__all__ = ["CALLBACK", "config_modal", "parse_config", "form_channel", "source_option", "source_label",
           "saved_note", "SourceChoice", "sources_offered", "STALE_FORM"]

CALLBACK = "ml_config"
MAX_OPTION_TEXT = 75  # Slack's limit for an option's text
STALE_FORM = "This form is out of date or damaged: run `/ml-config` in the channel again."
SLACK_SOURCES = {"slack:team-answers": "Team answers saved from Slack threads",
                 "slack:messages": "Slack messages added with the shortcut",
                 "slack:drafts": "Published team write-ups (/ml-draft)"}
SYNCED = "source:"  # what documents of a source kept in sync carry (`dml sources add`)
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{1,63}$")
_USER = re.compile(r"^[UW][A-Z0-9]{1,63}$")
_GROUP = re.compile(r"^(?:<!subteam\^)?@?(S[A-Z0-9]{1,63})(?:\|[^>]*>|>)?$")
MAX_TYPED = 500  # characters of a typed field looked at


@dataclass(frozen=True)
class SourceChoice:
    """A source offered in the modal, with how many documents it holds."""

    source: str
    documents: int


def source_option(source: str) -> str:
    """An option value for a source: short, stable, and the same on every replica."""
    return "src:" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_label(source: str, documents: int) -> str:
    """What a person recognises a source by (a folder's name, a site and path), with its size."""
    count = f" · {documents} doc{'s' if documents != 1 else ''}"
    if source in SLACK_SOURCES:
        name = SLACK_SOURCES[source]
    elif source.startswith(SYNCED):
        name = f"{source.removeprefix(SYNCED)} (kept in sync)"
    elif source.startswith(("http://", "https://")):
        parts = urlsplit(source)
        name = (parts.netloc + parts.path.rstrip("/")) or source
    else:
        folder, _, inner = source.partition("#")
        tail = "/".join(folder.replace("\\", "/").rstrip("/").split("/")[-2:])
        name = f"{inner} in {tail}" if inner else tail or source
    return _short(name, MAX_OPTION_TEXT - len(count)) + count


def sources_offered(config: ChannelConfig, available: Sequence[tuple[str, int]]
                    ) -> tuple[list[SourceChoice], int]:
    """The sources the modal offers (at most 100: the channel's own first, then the largest)
    and how many the knowledge base holds in all."""
    sizes = dict(available)
    chosen = [SourceChoice(s, sizes.get(s, 0)) for s in config.sources[:MAX_SOURCES]]
    rest = [SourceChoice(s, n) for s, n in available if s not in set(config.sources)]
    return (chosen + rest)[:MAX_SOURCES], len(sizes.keys() | set(config.sources))


def _option(choice: SourceChoice) -> dict:
    return {"text": {"type": "plain_text", "text": source_label(choice.source, choice.documents)},
            "value": source_option(choice.source)}


def config_modal(config: ChannelConfig, *, sources: Sequence[SourceChoice], total_sources: int,
                 min_confidence: float, global_experts: Sequence[str]) -> dict:
    """The modal for one channel's settings, filled with what it has now."""
    auto_option = {"text": {"type": "plain_text", "text": "Answer new questions here without a mention"},
                   "description": {"type": "plain_text",
                                   "text": "New messages that look like questions; never bots or replies."},
                   "value": "on"}
    auto = {"type": "checkboxes", "action_id": "auto", "options": [auto_option]}
    if config.auto_answer:
        auto["initial_options"] = [auto_option]
    confidence = {"type": "number_input", "action_id": "min_confidence", "is_decimal_allowed": True,
                  "min_value": "0", "max_value": f"{MAX_CONFIDENCE:g}",
                  "placeholder": {"type": "plain_text", "text": f"{min_confidence:.2f} (the global one)"}}
    if config.min_confidence is not None:
        confidence["initial_value"] = f"{config.min_confidence:g}"
    users = {"type": "multi_users_select", "action_id": "experts", "max_selected_items": MAX_EXPERTS,
             "placeholder": {"type": "plain_text", "text": "The global designated machine learners"}}
    people = [e for e in config.experts if not e.startswith("S")]
    if people:
        users["initial_users"] = people
    groups = {"type": "plain_text_input", "action_id": "expert_groups", "max_length": 300,
              "placeholder": {"type": "plain_text", "text": "S0123ABCD S0456EFGH"}}
    group_ids = [e for e in config.experts if e.startswith("S")]
    if group_ids:
        groups["initial_value"] = " ".join(group_ids)
    global_who = " ".join(mention(e) for e in global_experts[:10]) or "nobody yet (set DML_EXPERTS)"
    blocks: list[dict] = [
        _section(f"How I behave in <#{config.channel}>. The global designated machine learners "
                 f"({global_who}) can always change it."),
        {"type": "input", "block_id": "auto", "optional": True,
         "label": {"type": "plain_text", "text": "Auto-answer"}, "element": auto},
        {"type": "input", "block_id": "min_confidence", "optional": True,
         "label": {"type": "plain_text", "text": "Minimum confidence for an automatic answer"},
         "hint": {"type": "plain_text", "text": f"From 0 to {MAX_CONFIDENCE:g}. Below it I stay silent instead "
                  "of saying I don't know. Empty: the global threshold. Mentions are always answered."},
         "element": confidence},
        {"type": "input", "block_id": "experts", "optional": True,
         "label": {"type": "plain_text", "text": "Experts for this channel"},
         "hint": {"type": "plain_text", "text": "Questions I can't answer here are handed to them. "
                  "Empty: the global designated machine learners."},
         "element": users},
        {"type": "input", "block_id": "expert_groups", "optional": True,
         "label": {"type": "plain_text", "text": "…or user groups (ids like S0123ABCD)"},
         "element": groups},
    ]
    blocks.extend(_sources_blocks(config, sources, total_sources))
    return {"type": "modal", "callback_id": CALLBACK, "private_metadata": config.channel,
            "title": {"type": "plain_text", "text": "DML in this channel"},
            "submit": {"type": "plain_text", "text": "Save"},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def _sources_blocks(config: ChannelConfig, sources: Sequence[SourceChoice], total: int) -> list[dict]:
    if not sources:
        return [{"type": "context", "elements": [{"type": "mrkdwn", "text":
                "The knowledge base is empty: answers here may cite every source it gets."}]}]
    options = [_option(c) for c in sources]
    select = {"type": "multi_static_select", "action_id": "sources", "options": options,
              "max_selected_items": MAX_SOURCES,
              "placeholder": {"type": "plain_text", "text": "All sources"}}
    chosen = [o for o, c in zip(options, sources, strict=True) if c.source in set(config.sources)]
    if chosen:
        select["initial_options"] = chosen
    blocks = [{"type": "input", "block_id": "sources", "optional": True,
               "label": {"type": "plain_text", "text": "Sources answers here may cite"},
               "hint": {"type": "plain_text", "text": "Empty: all sources. Knowledge from a private "
                        "channel is still only cited in that channel."},
               "element": select}]
    if total > len(sources):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"Slack lists at most {MAX_SOURCES} choices: these are this channel's sources and "
                       f"the largest of the knowledge base's {total}; the other {total - len(sources)} "
                       "can't be chosen here."}]})
    return blocks


# -- reading a submission ---------------------------------------------------------------
def _element(view: dict, block: str) -> dict:
    """The submitted state of a block's one element ({} when missing or malformed)."""
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    actions = values.get(block) if isinstance(values, dict) else None
    if not isinstance(actions, dict) or len(actions) != 1:
        return {}
    element = next(iter(actions.values()))
    return element if isinstance(element, dict) else {}


def _selected_values(element: dict) -> list | None:
    """The chosen options' values, or None when the list is malformed."""
    options = element.get("selected_options", [])
    if not isinstance(options, list):
        return None
    values = [o.get("value") if isinstance(o, dict) else None for o in options]
    return values if all(isinstance(v, str) for v in values) else None


def _typed(element: dict) -> str | None:
    value = element.get("value")
    return value.strip() if isinstance(value, str) else None if value is not None else ""


def form_channel(view: dict) -> str | None:
    """The channel a submitted form is about (its private metadata), or None when damaged."""
    metadata = view.get("private_metadata") if isinstance(view, dict) else None
    return metadata if isinstance(metadata, str) and _CHANNEL.match(metadata) else None


def parse_config(view: dict, *, known_sources: Sequence[str]
                 ) -> tuple[ChannelConfig | None, dict[str, str]]:
    """The settings a submitted modal asks for: (config, {}) or (None, {block: problem}).

    ``known_sources``: the sources an option may stand for (the knowledge base's and the
    channel's own)."""
    channel = form_channel(view)
    if channel is None:
        return None, {"auto": STALE_FORM}
    errors: dict[str, str] = {}
    auto = _selected_values(_element(view, "auto"))
    if auto is None:
        errors["auto"] = STALE_FORM
    confidence, problem = _confidence(_typed(_element(view, "min_confidence")))
    if problem:
        errors["min_confidence"] = problem
    experts, problem = _experts(_element(view, "experts"))
    if problem:
        errors["experts"] = problem
    groups, problem = _groups(_typed(_element(view, "expert_groups")))
    if problem:
        errors["expert_groups"] = problem
    sources, problem = _sources(_element(view, "sources"), known_sources)
    if problem:
        errors["sources"] = problem
    if errors:
        return None, errors
    return ChannelConfig(channel=channel, auto_answer="on" in (auto or []), min_confidence=confidence,
                         experts=tuple(dict.fromkeys(experts + groups)), sources=sources), {}


def _confidence(text: str | None) -> tuple[float | None, str | None]:
    if text is None:
        return None, STALE_FORM
    if not text:
        return None, None
    try:
        value = float(text[:MAX_TYPED].replace(",", "."))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_CONFIDENCE:
        shown = text if len(text) <= 20 else text[:20] + "…"
        return None, f"A number from 0 to {MAX_CONFIDENCE:g}, like 0.6 (not “{shown}”), or empty for the global one."
    return value, None


def _experts(element: dict) -> tuple[list[str], str | None]:
    users = element.get("selected_users", [])
    if not isinstance(users, list) or not all(isinstance(u, str) and _USER.match(u) for u in users):
        return [], STALE_FORM
    if len(users) > MAX_EXPERTS:
        return [], f"At most {MAX_EXPERTS} experts per channel (a user group counts as one)."
    return list(users), None


def _groups(text: str | None) -> tuple[list[str], str | None]:
    if text is None:
        return [], STALE_FORM
    found = []
    for token in re.split(r"[\s,]+", text[:MAX_TYPED]):
        if not token:
            continue
        match = _GROUP.match(token)
        if not match:
            shown = token if len(token) <= 20 else token[:20] + "…"
            return [], f"“{shown}” is not a user-group id like S0123ABCD (Slack shows it in the group's profile)."
        found.append(match.group(1))
    if len(found) > MAX_EXPERTS:
        return [], f"At most {MAX_EXPERTS} experts per channel (a user group counts as one)."
    return found, None


def _sources(element: dict, known: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    values = _selected_values(element)
    if values is None:
        return (), STALE_FORM
    if len(values) > MAX_SOURCES:
        return (), f"At most {MAX_SOURCES} sources per channel."
    by_key = {source_option(s): s for s in known}
    missing = [v for v in values if v not in by_key]
    if missing:
        return (), ("A chosen source is no longer in the knowledge base: run `/ml-config` again "
                    "to choose among the sources there are now.")
    return tuple(dict.fromkeys(by_key[v] for v in values)), None


def saved_note(config: ChannelConfig, min_confidence: float) -> str:
    """What the person who saved the settings is told."""
    where = f"<#{config.channel}>"
    if config.auto_answer:
        first = (f"In {where} I now answer new questions without a mention when I'm at least "
                 f"{config.threshold(min_confidence):.2f} sure; below that I stay silent.")
    else:
        first = f"In {where} I answer only when mentioned."
    who = " ".join(mention(e) for e in config.experts) or "the global designated machine learners"
    cites = (f"only {len(config.sources)} chosen source{'s' if len(config.sources) != 1 else ''}"
             if config.sources else "every source")
    return f"Saved. {first} Questions I can't answer go to {who}; answers cite {cites}."
