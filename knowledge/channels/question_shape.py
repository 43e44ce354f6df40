"""Does a message look like a question? The test a watched channel's messages pass before
DML answers one it was not asked directly. A pure function of plain text.

It errs towards silence: a missed question can still be asked with a mention, while an
answer to "thanks!" or to a link someone shared is noise in a busy channel. What is
on-topic is not decided here: an off-topic question gets too little confidence, and the
watched channel's threshold keeps DML quiet then.
"""

from __future__ import annotations

import re

__all__ = ["looks_like_question", "MIN_QUESTION_WORDS"]

MIN_QUESTION_WORDS = 3  # "What is overfitting?" is a question; "Any update?" is a nudge
MAX_LOOKED_AT = 4000  # characters: a question is asked near the start (answers read 2,000)
_URL = re.compile(r"(?:https?|ftp)://\S+|www\.\S+", re.I)
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.S)
_QUOTE = re.compile(r"^\s*>.*$", re.M)
_EMOJI = re.compile(r":[a-z0-9_+'-]+:", re.I)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

WH_WORDS = {"what", "how", "why", "when", "where", "which", "who", "whom", "whose"}
WH_CONTRACTIONS = {"what's", "whats", "how's", "hows", "where's", "who's", "why's", "when's"}
AUXILIARIES = {"is", "are", "was", "were", "am", "can", "could", "should", "would", "will",
               "shall", "may", "might", "must", "do", "does", "did", "has", "have", "had"}
# After an auxiliary opener without a "?", a subject makes it a question ("is there …",
# "should we …"); anything else is usually a statement ("will be late", "would love …").
SUBJECTS = {"i", "we", "you", "it", "this", "that", "there", "they", "he", "she", "anyone",
            "anybody", "someone", "somebody", "everyone", "people", "the", "my", "our",
            "your", "these", "those", "any", "one"}
# "Do the standup", "have this ready", "did it!": imperatives and news, not questions.
WEAK_SUBJECTS = {"do": {"the", "this", "that", "it", "one", "any"},
                 "did": {"the", "this", "that", "it", "one", "any"},
                 "have": {"the", "this", "that", "it", "one", "any"},
                 "had": {"the", "this", "that", "it", "one", "any"}}
ANYONE = {"anyone", "anybody", "someone", "somebody", "any"}
ASKING_PHRASES = re.compile(
    r"\b(?:does (?:anyone|anybody) (?:know|have)|do (?:you|we) know|i (?:was )?wonder(?:ing)?|"
    r"wondering (?:if|whether|how|what|why|when|which)|is there (?:a|an|any) (?:way|reason|rule|guide|doc)|"
    r"(?:can|could) (?:someone|somebody|anyone|anybody|you) (?:explain|help|tell|point)|"
    r"any (?:idea|ideas|tips|advice|pointers|thoughts) (?:on|about|for|why|how|what|whether)|"
    r"(?:a|my|quick) question (?:about|on|regarding))\b")
GREETINGS = {"hi", "hello", "hey", "heya", "hiya", "yo", "morning", "evening", "afternoon", "good",
             "gm", "all", "team", "folks", "everyone", "everybody", "guys", "y'all", "yall", "there",
             "peeps", "friends", "again", "ok", "okay", "so", "also", "btw", "oh", "ah", "and",
             "quick", "question"}
THANKS = {"thanks", "thank", "thx", "ty", "tysm", "cheers", "kudos", "congrats", "congratulations",
          "great", "nice", "awesome", "cool", "lol", "haha", "perfect", "amazing", "wow", "yay"}
# Questions that close an announcement or hand the floor back: nothing to look up.
NUDGES = re.compile(r"^(?:any (?:questions?|objections?|updates?|news|takers)|thoughts|objections|"
                    r"(?:does (?:that|this)|that|this) (?:make sense|sound (?:good|ok|okay|right))|"
                    r"sounds? good|right|ok|okay|anyone|who(?:'s| is) in|make sense|questions|"
                    r"(?:is )?everyone ok with (?:that|this)|can (?:you|someone) (?:review|approve|merge|take a look)"
                    r"(?: (?:this|it|my \w+))?)\W*$")


# Code and links leave a marker behind: an opener must open the message, and the marker
# is no word of the question ("`x ? a : b` is the syntax" is not "is the syntax").
CODE, LINK = "xcodex", "xlinkx"
MARKERS = {CODE, LINK}


def _plain(text: str) -> str:
    """The words a person typed: code, links and emoji codes as markers, no quoted lines."""
    text = _CODE.sub(f" {CODE} ", text or "")
    text = _QUOTE.sub(" ", text)
    text = _URL.sub(f" {LINK} ", text)
    return _EMOJI.sub(" ", text)


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def _said(words: list[str]) -> list[str]:
    return [w for w in words if w not in MARKERS]


def _opens_a_question(words: list[str]) -> bool:
    """An interrogative opener that makes a question even without a "?"."""
    first, rest = words[0], words[1:4]
    if first in WH_CONTRACTIONS:
        return True
    if first in WH_WORDS:
        # "how to …", "what about …", "which optimiser should …"; not "when I run it, it
        # fails" nor "what a talk".
        return bool(rest) and (rest[0] in ("to", "about", "if") or any(w in AUXILIARIES for w in rest[:2]))
    if first in AUXILIARIES:
        weak = WEAK_SUBJECTS.get(first, set())
        return bool(rest) and rest[0] in SUBJECTS and rest[0] not in weak
    if first in ANYONE:
        return len(words) > 2  # "anyone know a good paper on …", "any tips for …"
    return False


def _question_sentences(text: str) -> list[str]:
    """The sentences that end in a question mark, each long enough to mean something."""
    found = []
    for sentence in _SENTENCE_END.split(text):
        if "?" in sentence:
            words = _words(sentence)
            while words and words[0] in GREETINGS | THANKS:
                words = words[1:]
            # "…, sounds good?": the clause that asks is the last one.
            last = _said(_words(re.split(r"[,;:–—]| - ", sentence)[-1]))
            if len(_said(words)) >= MIN_QUESTION_WORDS and not NUDGES.match(" ".join(last)) \
                    and not NUDGES.match(" ".join(_said(words))):
                found.append(" ".join(words))
    return found


def looks_like_question(text: str) -> bool:
    """Whether a channel message is a question DML may answer without being asked.

    A question mark in a sentence of at least three words (not a nudge like "any
    questions?"), or an interrogative opener ("how do I …", "is there a way …", "anyone
    know …"), or an asking phrase ("does anyone know", "I'm wondering whether"). Never a
    greeting, thanks, a link or code on its own, or an exclamation.
    """
    plain = _plain((text or "")[:MAX_LOOKED_AT])
    words = _words(plain)
    if len(_said(words)) < MIN_QUESTION_WORDS:
        return False
    if "?" in plain:  # it says where it asks: only there
        return bool(_question_sentences(plain))
    if plain.rstrip().endswith("!"):
        return False  # "What a great talk!", "How cool is that!"
    if ASKING_PHRASES.search(" ".join(words)):
        return True
    while words and words[0] in GREETINGS | THANKS:
        words = words[1:]
    return len(_said(words)) >= MIN_QUESTION_WORDS and _opens_a_question(words)
