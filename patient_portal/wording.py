"""The rules our French and English copy follows, and the mechanical clean-up they allow.

The base French catalogue (translations/fr) is written in Québec French: two of the three sites
and the sponsor are in Montréal. Paris participants read it through a small override catalogue
(translations/regional/fr_FR) made from it by `tidy`: the same sentences with each regional term
below replaced by the word used in France. Flask-Babel merges the override over the base
(i18n.py lists both directories). tests/test_wording.py fails on any other difference, on a
straight apostrophe in French, on masculine-only words about the reader and on spellings that
are not Canadian.

`python -m patient_portal.wording tidy` (run by `make translations`) curls the apostrophes of the
French catalogue and the instrument and protocol files, and writes the fr_FR override again:
run it after merging anyone's new strings.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
BASE_PO = ROOT / "translations" / "fr" / "LC_MESSAGES" / "messages.po"
REGIONAL_DIR = ROOT / "translations" / "regional"
FRANCE_PO = REGIONAL_DIR / "fr_FR" / "LC_MESSAGES" / "messages.po"
# Files whose French ("fr") texts are shown to participants beside the catalogue's.
FRENCH_DATA_FILES = [
    *sorted((ROOT / "patient_portal" / "questionnaires" / "instruments").glob("*.json")),
    ROOT / "patient_portal" / "protocol" / "care_ssc.json",
]

# (Québec, France): where the two differ, longest first so that an article's elision comes along.
REGIONAL_TERMS: list[tuple[str, str]] = [
    # "courriel" is the OQLF's word and the one Québec uses; in France, though official, it reads
    # as administrative, and people say "e-mail". Elided forms: "le e-mail" is not French.
    ("Le courriel", "L’e-mail"),
    ("le courriel", "l’e-mail"),
    ("Ce courriel", "Cet e-mail"),
    ("du courriel", "de l’e-mail"),
    ("ce courriel", "cet e-mail"),
    ("Courriel", "E-mail"),
    ("courriel", "e-mail"),
    # A mobile phone: "cellulaire" (or "cell") in Québec, "portable" in France.
    ("cellulaire", "portable"),
    # The OQLF's form of the job title; in France "coordinateur, coordinatrice".
    ("coordonnatrice", "coordinatrice"),
    ("coordonnateur", "coordinateur"),
    # A text message: "texto" in Québec, "SMS" in France.
    ("texto", "SMS"),
]

GENERATED_ON = datetime(2026, 12, 3, tzinfo=UTC)
STRAIGHT_APOSTROPHE = "'"
CURLY_APOSTROPHE = "’"
# An apostrophe between letters (l'équipe, aujourd'hui), never one inside an HTML tag or a
# placeholder: <a href='…'> keeps its quotes.
_ELISION = re.compile(r"(?<=[A-Za-zÀ-ÿ])'(?=[A-Za-zÀ-ÿ0-9])")
_TAG = re.compile(r"<[^>]*>")

# Masculine-only forms about the reader (about 80 % of people with SSc are women): each a pattern
# and why it is refused. Rewrite the sentence ("Votre session est fermée"), never "connecté(e)".
MASCULINE_ABOUT_THE_READER: list[tuple[str, str]] = [
    (
        r"\bvous (?:êtes|étiez|serez|soyez|seriez|êtes bien|n’êtes pas|n’êtes plus)\s+"
        r"(?:connecté|déconnecté|inscrit|prêt|sûr|certain|seul|invité|retiré|informé|prévenu|"
        r"satisfait|fatigué|allé|venu|arrivé|parti|libre de)\b(?!e)",
        "an adjective or participle agreeing with « vous » as if every reader were a man",
    ),
    (
        r"\bêtes-vous\s+(?:connecté|inscrit|prêt|sûr|certain|seul|satisfait)\b(?!e)",
        "a question to the reader in the masculine (« Êtes-vous sûr ? »)",
    ),
    (
        r"^(?:Connecté|Déconnecté|Inscrit|Retiré de l’étude|jamais connecté)$",
        "a status about a person in the masculine",
    ),
    (r"\bau nom du participant\b", "the person named as « le participant »"),
    (r"\ble participant\b|\bce participant\b", "the person named as « le participant »"),
]

# British spellings (en_CA writes diarrhea, esophagus, organize) and US ones (en_CA writes
# colour, centre, cancelled): a short list of the words this portal is likely to use.
NOT_CANADIAN_SPELLINGS: list[tuple[str, str]] = [
    (r"diarrhoea", "diarrhea"),
    (r"oesophag", "esophag"),
    (r"oedema", "edema"),
    (r"anaemi", "anemi"),
    (r"haemo", "hemo"),
    (r"paediatr", "pediatr"),
    (r"\b(?:organi|recogni|reali|minimi|apologi|summari|authori)s(?:e|ed|es|ing|ation)\b", "-ize"),
    (r"\bcolor", "colour"),
    (r"\bcenter", "centre"),
    (r"\bbehavior", "behaviour"),
    (r"\bfavorite", "favourite"),
    (r"\bhonor", "honour"),
    (r"\bcanceled\b|\bcanceling\b", "cancelled, cancelling"),
    (r"\bgray\b", "grey"),
]

# One name for the people who run the study with the participant.
STUDY_TEAM_FRENCH = "équipe de recherche"
OTHER_TEAM_NAMES_FRENCH = [
    r"équipe de l[’']étude",
    r"équipe soignante",
    r"équipes? médicales?",
    r"coordination de l[’']étude",
]
OTHER_TEAM_NAMES_ENGLISH = [r"\bcare team\b", r"\bstudy coordinator\b", r"\bresearch team\b"]


def _texts(message: Message) -> list[str]:
    strings = message.string if isinstance(message.string, (tuple, list)) else (message.string,)
    return [s for s in strings if s]


def read_catalogue(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def write_catalogue(catalogue: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalogue, width=76, omit_header=False)


def curl_apostrophes(text: str) -> str:
    """l'équipe → l’équipe, outside HTML tags."""
    pieces, last = [], 0
    for tag in _TAG.finditer(text):
        pieces.append(_ELISION.sub(CURLY_APOSTROPHE, text[last : tag.start()]))
        pieces.append(tag.group(0))
        last = tag.end()
    pieces.append(_ELISION.sub(CURLY_APOSTROPHE, text[last:]))
    return "".join(pieces)


def straight_apostrophes(text: str) -> bool:
    """Whether French text has a straight apostrophe outside HTML tags."""
    return STRAIGHT_APOSTROPHE in _TAG.sub("", text)


def in_france(text: str) -> str:
    """The Québec sentence as written in France: each regional term replaced."""
    for quebec, france in REGIONAL_TERMS:
        text = re.sub(rf"(?<![\w-]){re.escape(quebec)}(?![\w-])", france, text)
    return text


def regional_words(text: str, region: str) -> list[str]:
    """The other region's words found in a text meant for `region` ("CA" or "FR")."""
    words = [fr for _, fr in REGIONAL_TERMS] if region == "CA" else [qc for qc, _ in REGIONAL_TERMS]
    return [w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text)]


def effective_french(region: str) -> dict[str, list[str]]:
    """msgid → the French strings a participant of `region` reads (the override merged over
    the base, as Flask-Babel does)."""
    base = {m.id if isinstance(m.id, str) else m.id[0]: _texts(m) for m in read_catalogue(BASE_PO)}
    base.pop("", None)
    if region == "FR" and FRANCE_PO.exists():
        for message in read_catalogue(FRANCE_PO):
            if message.id and _texts(message):
                base[message.id if isinstance(message.id, str) else message.id[0]] = _texts(message)
    return base


def _curl_data_file(path: Path) -> bool:
    """Curl the apostrophes of every "fr" text in an instrument or protocol file, in place."""
    original = path.read_text(encoding="utf-8")

    def fix(node: object) -> object:
        if isinstance(node, dict):
            return {
                key: curl_apostrophes(value)
                if key == "fr" and isinstance(value, str)
                else fix(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [fix(item) for item in node]
        return node

    # Texts are edited in the file's own layout (hand-formatted JSON): only string contents
    # change, so a targeted replacement of each changed "fr" string keeps the layout.
    data = json.loads(original)
    updated = original
    for before, after in _changed_strings(data, fix(data)):
        updated = updated.replace(
            json.dumps(before, ensure_ascii=False), json.dumps(after, ensure_ascii=False)
        )
    if updated != original:
        path.write_text(updated, encoding="utf-8")
    return updated != original


def _changed_strings(before: object, after: object) -> list[tuple[str, str]]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [pair for key in before for pair in _changed_strings(before[key], after[key])]
    if isinstance(before, list) and isinstance(after, list):
        return [pair for b, a in zip(before, after, strict=True) for pair in _changed_strings(b, a)]
    if isinstance(before, str) and isinstance(after, str) and before != after:
        return [(before, after)]
    return []


def french_data_texts(path: Path) -> list[str]:
    """Every "fr" text of an instrument or protocol file."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "fr" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(path.read_text(encoding="utf-8")))
    return found


def tidy() -> list[str]:
    """Curl French apostrophes everywhere and write the fr_FR override again; what changed."""
    changed = []
    base = read_catalogue(BASE_PO)
    curled = False
    for message in base:
        if not message.id:
            continue
        if isinstance(message.string, (tuple, list)):
            fixed: str | tuple[str, ...] = tuple(curl_apostrophes(s) for s in message.string)
        else:
            fixed = curl_apostrophes(message.string or "")
        if fixed != message.string:
            message.string = fixed
            curled = True
    if curled:
        write_catalogue(base, BASE_PO)
        changed.append(str(BASE_PO.relative_to(ROOT)))
    changed += [str(p.relative_to(ROOT)) for p in FRENCH_DATA_FILES if _curl_data_file(p)]

    # Fixed dates: the file changes only when its words do.
    france = Catalog(
        locale="fr_FR",
        project="CARE-SSc",
        fuzzy=False,
        creation_date=GENERATED_ON,
        revision_date=GENERATED_ON,
    )
    for message in base:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.string, (tuple, list)):
            regional: str | tuple[str, ...] = tuple(in_france(s) for s in message.string)
        else:
            regional = in_france(message.string or "")
        if regional != message.string:
            france.add(message.id, regional, context=message.context)
    old = FRANCE_PO.read_bytes() if FRANCE_PO.exists() else b""
    write_catalogue(france, FRANCE_PO)
    if FRANCE_PO.read_bytes() != old:
        changed.append(str(FRANCE_PO.relative_to(ROOT)))
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["tidy"]:
        sys.exit("usage: python -m patient_portal.wording tidy")
    for name in tidy():
        print(f"rewrote {name}")
