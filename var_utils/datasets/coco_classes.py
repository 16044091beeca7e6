r"""COCO categories and the ImageNet-1k classes below each one's WordNet synset.

Each of the 80 COCO 2017 categories has one WordNet 3.0 noun synset (the ``wordnet_synset`` column of the
shipped ``var_utils/data/coco_categories.csv``). ImageNet-1k's classes are WordNet synsets too ("wnids",
``var_utils/data/imagenet_wnids.txt`` in class order), so a COCO category maps to every ImageNet class whose
synset is its synset or lies below it (hyponyms and instance hyponyms, transitively).

:func:`derive_coco_imagenet_table` computes that table from a WordNet database; the result is shipped as
``var_utils/data/coco_imagenet.csv`` and read by :func:`coco_imagenet_classes`, so no WordNet is needed at
run time. Regenerate the shipped table and its documentation page with::

    python -m var_utils.datasets.coco_classes --wordnet /usr/share/wordnet \
        --out var_utils/data/coco_imagenet.csv --docs docs/coco_classes.md
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .._io import atomic_output_path
from .imagenet import read_synset_mapping
from .wordnet import WORDNET_DIRS, WordNet, wnid_to_offset

COCO_CATEGORIES_FILE = "coco_categories.csv"
IMAGENET_WNIDS_FILE = "imagenet_wnids.txt"
COCO_IMAGENET_FILE = "coco_imagenet.csv"
TABLE_COLUMNS = ("coco_id", "coco_name", "wordnet_synset", "imagenet_class", "imagenet_wnid")
REGENERATE_COMMAND = (
    "python -m var_utils.datasets.coco_classes --wordnet /usr/share/wordnet "
    "--out var_utils/data/coco_imagenet.csv --docs docs/coco_classes.md"
)


class CocoCategory(NamedTuple):
    """One COCO 2017 category and the WordNet synset chosen for it."""

    id: int
    name: str
    supercategory: str
    wordnet_synset: str


def _data_file(name: str):
    # importlib.resources finds the shipped files in any install (wheel, editable, source tree).
    return resources.files("var_utils") / "data" / name


def _read_categories() -> tuple[CocoCategory, ...]:
    with _data_file(COCO_CATEGORIES_FILE).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return tuple(CocoCategory(int(row["id"]), row["name"], row["supercategory"], row["wordnet_synset"]) for row in rows)


COCO_CATEGORIES: tuple[CocoCategory, ...] = _read_categories()
"""The 80 COCO 2017 categories (official ids, 1..90 with gaps) with their WordNet synsets, in id order."""


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k synset ids ("wnids") in class order (class index = position = sorted order).

    Returns
    -------
    list of str
        E.g. ``"n01440764"`` (class 0, tench) first.

    Examples
    --------
    >>> wnids = imagenet_wnids()
    >>> len(wnids), wnids[281]
    (1000, 'n02123045')
    """
    return _data_file(IMAGENET_WNIDS_FILE).read_text(encoding="utf-8").split()


def read_wnids(path: str | Path) -> list[str]:
    """ImageNet synset ids in class order from a file of one wnid per line or ImageNet's ``LOC_synset_mapping.txt``.

    Parameters
    ----------
    path : str or Path
        Lines starting with a wnid (``n01440764`` or ``n01440764 tench, Tinca tinca``); the first token counts.

    Returns
    -------
    list of str
        The wnids; class index = line order.

    Raises
    ------
    FileNotFoundError
        If ``path`` is no file.
    ValueError
        If a line does not start with ``n`` + 8 digits, the file is empty, or a wnid repeats.
    """
    return read_synset_mapping(path)


def derive_coco_imagenet_table(
    wordnet: WordNet, wnids: Sequence[str], categories: Sequence[CocoCategory] = COCO_CATEGORIES
) -> pd.DataFrame:
    """One row per (COCO category, ImageNet class) whose synset lies in the category's hyponym closure.

    Parameters
    ----------
    wordnet : WordNet
        The WordNet 3.0 noun database.
    wnids : sequence of str
        ImageNet synset ids; the class index is the position (e.g. :func:`imagenet_wnids`).
    categories : sequence of CocoCategory, optional
        The COCO categories with their synset names (default: :data:`COCO_CATEGORIES`).

    Returns
    -------
    pandas.DataFrame
        Columns ``coco_id, coco_name, wordnet_synset, imagenet_class, imagenet_wnid``, sorted by ``coco_id``
        then ``imagenet_class``; categories without any class have no row.

    Raises
    ------
    ValueError
        If a synset name is unknown to ``wordnet``, or a wnid is malformed or no synset of ``wordnet``.
    """
    class_of_offset: dict[int, int] = {}
    for index, wnid in enumerate(wnids):
        offset = wnid_to_offset(wnid)
        wordnet.lemmas(offset)  # a wnid missing from WordNet would silently match nothing
        class_of_offset[offset] = index
    rows = []
    for category in sorted(categories, key=lambda category: category.id):
        try:
            closure = wordnet.hyponym_closure(wordnet.synset_offset(category.wordnet_synset))
        except ValueError as error:
            raise ValueError(f"COCO category {category.id} ({category.name}): {error}") from error
        for index in sorted(class_of_offset[offset] for offset in closure if offset in class_of_offset):
            rows.append((category.id, category.name, category.wordnet_synset, index, wnids[index]))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype({"coco_id": "int64", "imagenet_class": "int64"})


def table_to_csv(table: pd.DataFrame) -> str:
    """The CSV text of a table of :func:`derive_coco_imagenet_table`, as shipped (Unix line ends, no index column)."""
    return table.to_csv(index=False, lineterminator="\n")


def coco_imagenet_classes() -> dict[int, tuple[int, ...]]:
    """The ImageNet-1k classes of every COCO category, from the shipped table ``coco_imagenet.csv``.

    Returns
    -------
    dict of int to tuple of int
        COCO category id → sorted ImageNet class indices; every COCO id is a key, in id order, and a
        category with no ImageNet class maps to ``()``.

    Raises
    ------
    ValueError
        If the shipped table names a COCO id that is not a COCO category.

    Examples
    --------
    >>> classes = coco_imagenet_classes()
    >>> classes[17]  # cat: tabby, tiger cat, Persian, Siamese, Egyptian cat
    (281, 282, 283, 284, 285)
    >>> classes[47]  # cup: ImageNet's "cup" is a drink, its coffee mug a mug
    ()
    """
    classes: dict[int, list[int]] = {category.id: [] for category in COCO_CATEGORIES}
    with _data_file(COCO_IMAGENET_FILE).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            coco_id = int(row["coco_id"])
            if coco_id not in classes:
                raise ValueError(f"{COCO_IMAGENET_FILE} names COCO id {coco_id}, which is no COCO category.")
            classes[coco_id].append(int(row["imagenet_class"]))
    return {coco_id: tuple(sorted(indices)) for coco_id, indices in classes.items()}


# -- the documentation page ------------------------------------------------------------------------------------------


class _Note(NamedTuple):
    coco_id: int
    classes: tuple[int, ...]
    text: str


# ImageNet classes a reader might expect under a COCO category, which WordNet puts elsewhere (tests check
# that none of them is in the table, so the page cannot drift from the data).
NEAR_MISSES: tuple[_Note, ...] = (
    _Note(4, (670,), "WordNet files the motor scooter directly under wheeled vehicle, beside the motorcycle."),
    _Note(5, (895,), "a warplane is a heavier-than-air craft and a military vehicle, a sibling of airplane."),
    _Note(
        7,
        (547, 820, 565, 705, 829),
        "locomotives, railway cars and the streetcar are wheeled vehicles of their own in WordNet, not kinds of "
        "train (a line of railway cars).",
    ),
    _Note(
        9,
        (510, 628, 724, 780, 833, 484, 871),
        "WordNet's boat is 'a small vessel'; ships, sailing vessels (the catamaran and trimaran are sailboats, "
        "under sailing vessel) and submarines (warships) are other vessels.",
    ),
    _Note(21, (346, 347), "water buffalo and bison are bovids beside, not below, cattle."),
    _Note(22, (101,), "a tusker is 'any mammal with prominent tusks', filed under mammal."),
    _Note(31, (748,), "ImageNet's purse is 'a small bag for carrying money', a kind of bag.n.01, not of handbag."),
    _Note(46, (572,), "the goblet is a drinking glass beside the wineglass, not below it."),
    _Note(
        47,
        (504, 967, 968),
        "ImageNet's cup is cup.n.06, 'a punch served in a pitcher', and espresso is a coffee: both drinks; the "
        "coffee mug is a mug (a drinking vessel), which is no kind of cup in WordNet.",
    ),
    _Note(64, (738,), "ImageNet's pot is the flowerpot, a container; the COCO category is the plant in it."),
    _Note(70, (861,), "the toilet seat is a part of the toilet (WordNet: part holonym) and a kind of seat."),
    _Note(
        72,
        (851, 664, 782),
        "ImageNet's television is television.n.02, the telecommunication system, not the set; monitor and screen "
        "are other electronic equipment.",
    ),
    _Note(76, (878,), "a typewriter keyboard is a keyboard but not a computer keyboard."),
    _Note(81, (896,), "WordNet's washbasin is a basin (a vessel), not a sink (a plumbing fixture)."),
)

# ImageNet classes that the hyponym rule puts under a COCO category although a reader might not expect them
# (tests check that each is in the table).
SURPRISES: tuple[_Note, ...] = (
    _Note(3, (656,), "the minivan is both a car and a van (a truck) in WordNet, so it is under COCO car and truck."),
    _Note(8, (656,), "see car."),
    _Note(37, (747,), "WordNet's punching bag ('punching ball') is a kind of ball.n.01."),
    _Note(44, (899, 901), "water jug and whiskey jug are jugs, 'a large bottle with a narrow mouth'."),
    _Note(49, (623,), "the letter opener is a 'dull knife' in WordNet."),
    _Note(54, (933, 934), "cheeseburger and hotdog are sandwiches; the hotdog is also under COCO hot dog."),
    _Note(
        79,
        (544,),
        "ImageNet's Dutch oven is dutch_oven.n.01, 'an oven consisting of a metal box for cooking in front of a "
        "fire', a kind of oven.n.01; the cooking pot of that name is dutch_oven.n.02, which ImageNet does not use.",
    ),
)

# Why a synset was chosen where COCO's name and WordNet's senses disagree.
SYNSET_CHOICES: tuple[tuple[int, str], ...] = (
    (11, "fireplug.n.01 is the synset of the lemma fire_hydrant."),
    (
        13,
        "WordNet 3.0 has no synset for stop sign (nor for traffic sign); street_sign.n.01, 'a sign visible from "
        "the street', is the closest, and its only ImageNet class is 919 street sign.",
    ),
    (
        17,
        "domestic_cat.n.01, not cat.n.01: cat.n.01 ('true cat') also covers wildcats such as cougar (286) and "
        "lynx (287); lion and tiger are big cats (cat.n.07), outside both.",
    ),
    (21, "cattle.n.01, not cow.n.01 ('female of domestic cattle'): ImageNet's 345 ox is a kind of cattle."),
    (31, "bag.n.04 is the handbag sense of bag."),
    (33, "bag.n.06 is the suitcase sense of bag."),
    (37, "ball.n.01, 'round object that is hit or thrown or kicked in games', not ball.n.06, a plaything."),
    (38, "kite.n.03 is the toy; kite.n.04 is the bird of prey (ImageNet's 21 kite)."),
    (51, "bowl.n.03 is the dish for serving food."),
    (
        52,
        "banana, apple, orange, broccoli and carrot use their food senses (lexicographer file noun.food), not "
        "the plant or tree.",
    ),
    (58, "hotdog.n.02 is the frankfurter in a bun; hotdog.n.03 is the sausage alone, hotdog.n.01 a show-off."),
    (70, "toilet.n.02 is the plumbing fixture; toilet.n.01 is the room."),
    (
        72,
        "television_receiver.n.01 (= television.n.03) is the TV set that COCO annotates; see the near misses "
        "for ImageNet's 851 television.",
    ),
    (74, "mouse.n.04 is the computer mouse; mouse.n.01 is the rodent."),
    (
        76,
        "computer_keyboard.n.01: COCO's keyboard is in the electronic supercategory; keyboard.n.01 (keys of a "
        "piano, organ, typewriter, ...) would also take 878 typewriter keyboard.",
    ),
    (84, "book.n.02 is the physical object; book.n.01 is the written work."),
    (89, "hand_blower.n.01 is the synset of the lemma hair_drier."),
)


def _cell(text: str) -> str:
    # Markdown table cells cannot hold a bare pipe or a line break.
    return text.replace("|", "\\|").replace("\n", " ")


def _short_gloss(gloss: str, limit: int = 90) -> str:
    # A gloss is a definition followed by '; "example"' sentences; the definition is enough here.
    definition = gloss.split('; "')[0].split(' "')[0].strip().rstrip(";:")
    return definition if len(definition) <= limit else definition[: limit - 1].rstrip() + "…"


def _class_list(classes: Sequence[int], class_names: Sequence[str]) -> str:
    return ", ".join(f"{index} {class_names[index]}" for index in classes)


def class_order_check(wordnet: WordNet, wnids: Sequence[str], class_names: Sequence[str]) -> dict[int, list[str]]:
    """Classes whose name is none of their synset's lemmas: a check that ``wnids`` and ``class_names`` align.

    Parameters
    ----------
    wordnet : WordNet
        The WordNet 3.0 noun database.
    wnids : sequence of str
        ImageNet synset ids in class order.
    class_names : sequence of str
        A model's class names in class order (e.g. :func:`var_utils.models.imagenet_class_names`).

    Returns
    -------
    dict of int to list of str
        Class index → its synset's lemmas, for the classes whose name (case and ``_``/space aside) is none of
        them; empty when all names agree.
    """
    mismatches = {}
    for index, (wnid, name) in enumerate(zip(wnids, class_names)):
        lemmas = wordnet.lemmas(wnid_to_offset(wnid))
        if name.replace("_", " ").lower() not in {lemma.replace("_", " ").lower() for lemma in lemmas}:
            mismatches[index] = lemmas
    return mismatches


def render_docs(
    table: pd.DataFrame,
    wordnet: WordNet,
    class_names: Sequence[str],
    categories: Sequence[CocoCategory] = COCO_CATEGORIES,
    class_order_mismatches: Mapping[int, Sequence[str]] | None = None,
) -> str:
    """The Markdown page describing a table of :func:`derive_coco_imagenet_table`.

    Parameters
    ----------
    table : pandas.DataFrame
        The derived table.
    wordnet : WordNet
        The WordNet it was derived from (for glosses).
    class_names : sequence of str
        ImageNet class names in class order.
    categories : sequence of CocoCategory, optional
        The COCO categories of the table.
    class_order_mismatches : mapping of int to sequence of str, optional
        The result of :func:`class_order_check`, reported on the page when given.

    Returns
    -------
    str
        The page, ending in a newline.
    """
    categories = sorted(categories, key=lambda category: category.id)
    by_id = {category.id: category for category in categories}
    classes = {category.id: [] for category in categories}
    for coco_id, index in zip(table["coco_id"], table["imagenet_class"]):
        classes[int(coco_id)].append(int(index))
    empty = [category for category in categories if not classes[category.id]]
    owners: dict[int, list[int]] = {}
    for coco_id, indices in classes.items():
        for index in indices:
            owners.setdefault(index, []).append(coco_id)
    shared = {index: ids for index, ids in sorted(owners.items()) if len(ids) > 1}

    lines = [
        "# COCO categories and ImageNet-1k classes",
        "",
        "<!-- Generated by var_utils.datasets.coco_classes; edit the generator, not this page. -->",
        "",
        "`var_utils.datasets.coco_classes.coco_imagenet_classes()` tells which ImageNet-1k classes of a classifier "
        "belong to a COCO category, e.g. to sum a model's scores for COCO *cat* over the five domestic-cat classes. "
        "It reads the shipped table `var_utils/data/coco_imagenet.csv`, one row per (COCO category, ImageNet class).",
        "",
        "## How the table is derived",
        "",
        "- ImageNet-1k's class ids (wnids such as `n02123045`) are WordNet 3.0 noun synsets: `n` + the synset's "
        "offset in `data.noun`. The class index is the position of the wnid in sorted order "
        "(`var_utils/data/imagenet_wnids.txt`).",
        "- Each COCO category gets one WordNet synset by hand (`wordnet_synset` in "
        "`var_utils/data/coco_categories.csv`, written `lemma.n.NN` with NN the sense number of the lemma in "
        "`index.noun`), chosen by reading the synset's gloss.",
        "- A COCO category maps to every ImageNet class whose synset is that synset or lies below it, following "
        "hyponym (`~`) and instance-hyponym (`~i`) pointers transitively. Nothing is added by hand: a category is "
        "never widened to a broader synset to gain classes, so a category can map to no class at all.",
        "- The WordNet files are read by `var_utils.datasets.wordnet.WordNet`, offline.",
        "",
        "## Regenerating",
        "",
        "With WordNet 3.0 installed (Debian/Ubuntu: `apt-get install wordnet-base`, files in `/usr/share/wordnet`), "
        "from the repository root:",
        "",
        "```bash",
        REGENERATE_COMMAND,
        "```",
        "",
        "`--wnids FILE` derives the table for another class list: one wnid per line, or ImageNet's "
        "`LOC_synset_mapping.txt` (`n01440764 tench, Tinca tinca`; the first token of each line counts). "
        "The test `tests/test_coco_classes.py` regenerates the table and compares it with the shipped CSV.",
        "",
        "## Summary",
        "",
        f"- {len(categories) - len(empty)} of {len(categories)} COCO categories map to at least one ImageNet class; "
        f"{len(empty)} map to none.",
        f"- {len(table)} (category, class) pairs over {len(owners)} distinct ImageNet classes.",
    ]
    if shared:
        shared_text = "; ".join(
            f"{index} {class_names[index]} ({', '.join(by_id[coco_id].name for coco_id in ids)})"
            for index, ids in shared.items()
        )
        lines.append(f"- ImageNet classes under more than one category: {shared_text}.")
    lines += [
        "",
        "## Table",
        "",
        "| id | COCO name | WordNet synset | gloss | # | ImageNet classes |",
        "|---:|---|---|---|---:|---|",
    ]
    for category in categories:
        gloss = _short_gloss(wordnet.gloss(wordnet.synset_offset(category.wordnet_synset)))
        lines.append(
            f"| {category.id} | {_cell(category.name)} | `{category.wordnet_synset}` | {_cell(gloss)} | "
            f"{len(classes[category.id])} | {_cell(_class_list(classes[category.id], class_names)) or '–'} |"
        )
    lines += ["", "## Categories with no ImageNet class", ""]
    lines += [f"- {category.id} {category.name} (`{category.wordnet_synset}`)" for category in empty] or ["None."]
    lines += [
        "",
        "## Notes on choices",
        "",
        "### Synsets where COCO and WordNet disagree",
        "",
    ]
    lines += [f"- **{by_id[coco_id].name}** ({coco_id}): {text}" for coco_id, text in SYNSET_CHOICES]
    lines += [
        "",
        "### Near misses: ImageNet classes WordNet puts outside a category",
        "",
        "Not in the table, by the hyponym rule; add them by hand only knowingly.",
        "",
    ]
    lines += [
        f"- **{by_id[note.coco_id].name}** ({note.coco_id}): not {_class_list(note.classes, class_names)}: {note.text}"
        for note in NEAR_MISSES
    ]
    lines += ["", "### Included, perhaps unexpectedly", ""]
    lines += [
        f"- **{by_id[note.coco_id].name}** ({note.coco_id}): {_class_list(note.classes, class_names)}: {note.text}"
        for note in SURPRISES
    ]
    if class_order_mismatches is not None:
        lines += [
            "",
            "## Class-order check",
            "",
            f"For {len(class_names) - len(class_order_mismatches)} of {len(class_names)} classes the model's class "
            "name (`var_utils.models.imagenet_class_names()`, as in `load_model(...).class_names`) is a lemma of "
            "the class's WordNet synset, so the wnids and the class names are in the same order.",
        ]
        if class_order_mismatches:
            details = "; ".join(
                f"{index} `{class_names[index]}`, lemmas {', '.join(f'`{lemma}`' for lemma in lemmas)}"
                for index, lemmas in sorted(class_order_mismatches.items())
            )
            lines.append(f"The exceptions: {details}.")
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m var_utils.datasets.coco_classes",
        description="Derive the COCO category → ImageNet-1k class table from WordNet 3.0 and write it "
        "(and optionally its documentation page).",
    )
    parser.add_argument(
        "--wordnet",
        type=Path,
        default=None,
        help=f"WordNet 3.0 folder with index.noun and data.noun (default: the first of "
        f"{', '.join(str(folder) for folder in WORDNET_DIRS)})",
    )
    parser.add_argument(
        "--wnids",
        type=Path,
        default=None,
        help="ImageNet wnids in class order: one per line, or LOC_synset_mapping.txt (default: the shipped list)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"CSV to write (default: the shipped var_utils/data/{COCO_IMAGENET_FILE})",
    )
    parser.add_argument("--docs", type=Path, default=None, help="Markdown page to write (default: none)")
    return parser


def _write_text(path: Path, text: str) -> None:
    # Write under a temporary name in the same folder, then os.replace: readers never see half a file.
    with atomic_output_path(path) as tmp_path:
        tmp_path.write_text(text, encoding="utf-8", newline="")


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the COCO → ImageNet table (and its documentation page) from a WordNet 3.0 database.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    SystemExit
        With code 2 and a one-line message on stderr for a bad path or database.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        wordnet = WordNet(args.wordnet)  # None: search WORDNET_DIRS
        wnids = read_wnids(args.wnids) if args.wnids is not None else imagenet_wnids()
        table = derive_coco_imagenet_table(wordnet, wnids)
        out = args.out if args.out is not None else Path(str(_data_file(COCO_IMAGENET_FILE)))
        docs = None
        if args.docs is not None:
            docs = _render_docs_for(table, wordnet, wnids)
        _write_text(out, table_to_csv(table))
        if docs is not None:
            _write_text(args.docs, docs)
    except (OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"wrote {out} ({len(table)} rows)" + (f" and {args.docs}" if args.docs is not None else ""))
    return 0


def _render_docs_for(table: pd.DataFrame, wordnet: WordNet, wnids: Sequence[str]) -> str:
    if len(wnids) == 1000:
        # The standard ImageNet-1k classes: the names a model of var_utils reports (torchvision's metadata).
        from ..models import imagenet_class_names

        class_names = imagenet_class_names()
        mismatches = class_order_check(wordnet, wnids, class_names)
        return render_docs(table, wordnet, class_names, class_order_mismatches=mismatches)
    # Another class list: name each class by its synset's first lemma.
    class_names = [wordnet.lemmas(wnid_to_offset(wnid))[0].replace("_", " ") for wnid in wnids]
    return render_docs(table, wordnet, class_names)


__all__ = [
    "COCO_CATEGORIES",
    "CocoCategory",
    "NEAR_MISSES",
    "SURPRISES",
    "class_order_check",
    "coco_imagenet_classes",
    "derive_coco_imagenet_table",
    "imagenet_wnids",
    "main",
    "read_wnids",
    "render_docs",
    "table_to_csv",
]

if __name__ == "__main__":
    raise SystemExit(main())
