"""COCO categories → ImageNet-1k classes: the shipped table, the WordNet reader and the generator."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from var_utils.datasets.coco_classes import (
    COCO_CATEGORIES,
    COCO_IMAGENET_FILE,
    NEAR_MISSES,
    SURPRISES,
    TABLE_COLUMNS,
    CocoCategory,
    class_order_check,
    coco_imagenet_classes,
    derive_coco_imagenet_table,
    imagenet_wnids,
    main,
    read_wnids,
    table_to_csv,
)
from var_utils.datasets.wordnet import WordNet, find_wordnet_dir, offset_to_wnid, wnid_to_offset

WORDNET_DIR = Path("/usr/share/wordnet")
REPO = Path(__file__).resolve().parents[1]
SHIPPED_CSV = REPO / "var_utils" / "data" / COCO_IMAGENET_FILE
SHIPPED_DOCS = REPO / "docs" / "coco_classes.md"

# ImageNet classes by index, checked by hand against the class names.
TABBY, TIGER_CAT, PERSIAN, SIAMESE, EGYPTIAN_CAT, COUGAR, LYNX = 281, 282, 283, 284, 285, 286, 287
ESPRESSO, COFFEE_MUG, CUP_DRINK = 967, 504, 968
COCO_PERSON, COCO_MOTORCYCLE, COCO_CAT, COCO_DOG, COCO_CUP = 1, 4, 17, 18, 47


def _wordnet_or_skip() -> WordNet:
    # CI sets VAR_REQUIRE_WORDNET=1 so that a missing WordNet fails instead of silently skipping.
    if all((WORDNET_DIR / name).is_file() for name in ("index.noun", "data.noun")):
        return WordNet(WORDNET_DIR)
    reason = f"WordNet 3.0 not found at {WORDNET_DIR} (Debian: apt-get install wordnet-base)"
    if os.environ.get("VAR_REQUIRE_WORDNET") == "1":
        pytest.fail(f"{reason}, but VAR_REQUIRE_WORDNET=1 requires it.")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return _wordnet_or_skip()


# -- the shipped table (no WordNet needed) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classes() -> dict[int, tuple[int, ...]]:
    return coco_imagenet_classes()


@pytest.mark.parametrize(
    "coco_id, imagenet_class, expected",
    [
        (COCO_CAT, TABBY, True),
        (COCO_CAT, TIGER_CAT, True),
        (COCO_CAT, EGYPTIAN_CAT, True),
        (COCO_CAT, COUGAR, False),
        (COCO_CAT, LYNX, False),
        (COCO_PERSON, 981, True),  # ballplayer
        (COCO_PERSON, 982, True),  # groom
        (COCO_PERSON, 983, True),  # scuba diver
        (COCO_MOTORCYCLE, 665, True),  # moped
        (COCO_MOTORCYCLE, 670, False),  # motor scooter: a wheeled vehicle in WordNet
        (21, 345, True),  # cow: ox, under cattle.n.01
        (38, 21, False),  # COCO kite (the toy) is not ImageNet's kite (the bird)
        (74, 673, True),  # computer mouse
    ],
)
def test_hand_checked_pairs(classes, coco_id, imagenet_class, expected):
    assert (imagenet_class in classes[coco_id]) is expected


def test_cat_is_exactly_the_domestic_cats(classes):
    assert classes[COCO_CAT] == (TABBY, TIGER_CAT, PERSIAN, SIAMESE, EGYPTIAN_CAT)


def test_dog_is_the_118_dog_breeds(classes):
    assert classes[COCO_DOG] == tuple(range(151, 269))
    assert len(classes[COCO_DOG]) == 118


def test_person_contains_the_three_people(classes):
    assert {981, 982, 983} <= set(classes[COCO_PERSON])


@pytest.mark.parametrize("imagenet_class", [ESPRESSO, CUP_DRINK, COFFEE_MUG])
def test_cup_and_coffee_drinks_map_to_nothing(classes, imagenet_class):
    assert classes[COCO_CUP] == ()
    if imagenet_class != COFFEE_MUG:  # espresso and ImageNet's cup are drinks: in no category at all
        assert all(imagenet_class not in indices for indices in classes.values())


def test_every_coco_category_is_a_key(classes):
    assert list(classes) == [category.id for category in COCO_CATEGORIES]
    assert len(classes) == 80
    shipped_ids = set(pd.read_csv(SHIPPED_CSV)["coco_id"])
    assert shipped_ids <= set(classes)
    assert all(indices == tuple(sorted(set(indices))) for indices in classes.values())


def test_coco_categories_are_the_80_official_ones():
    assert len(COCO_CATEGORIES) == 80
    ids = [category.id for category in COCO_CATEGORIES]
    assert ids == sorted(set(ids)) and ids[0] == 1 and ids[-1] == 90
    assert all(re.fullmatch(r"[a-z_]+\.n\.\d\d", category.wordnet_synset) for category in COCO_CATEGORIES)


def test_imagenet_wnids_are_1000_sorted_unique():
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000
    assert wnids == sorted(wnids)
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in wnids)
    assert wnids[TABBY] == "n02123045"


def test_shipped_table_layout():
    table = pd.read_csv(SHIPPED_CSV)
    assert tuple(table.columns) == TABLE_COLUMNS
    assert table.equals(table.sort_values(["coco_id", "imagenet_class"]).reset_index(drop=True))
    wnids = imagenet_wnids()
    assert all(wnids[index] == wnid for index, wnid in zip(table["imagenet_class"], table["imagenet_wnid"]))


@pytest.mark.parametrize("note", NEAR_MISSES, ids=lambda note: str(note.coco_id))
def test_documented_near_misses_are_not_in_the_table(classes, note):
    assert not set(note.classes) & set(classes[note.coco_id])


@pytest.mark.parametrize("note", SURPRISES, ids=lambda note: str(note.coco_id))
def test_documented_surprises_are_in_the_table(classes, note):
    assert set(note.classes) <= set(classes[note.coco_id])


@pytest.mark.parametrize("wnid, offset", [("n02084071", 2084071), ("n00001740", 1740)])
def test_wnid_offset_round_trip(wnid, offset):
    assert wnid_to_offset(wnid) == offset
    assert offset_to_wnid(offset) == wnid


@pytest.mark.parametrize("wnid", ["02084071", "n2084071", "n020840710", "v02084071", ""])
def test_bad_wnid_raises(wnid):
    with pytest.raises(ValueError, match="wnid"):
        wnid_to_offset(wnid)


def test_read_wnids_accepts_loc_synset_mapping(tmp_path):
    wnids = imagenet_wnids()
    loc = tmp_path / "LOC_synset_mapping.txt"
    loc.write_text("".join(f"{wnid} class {index}, another name\n" for index, wnid in enumerate(wnids)))
    plain = tmp_path / "wnids.txt"
    plain.write_text("\n".join(wnids) + "\n")
    assert read_wnids(loc) == read_wnids(plain) == wnids


# -- the WordNet reader without the real database: a three-synset toy -----------------------------------------------


def _write_toy_wordnet(folder: Path) -> dict[str, int]:
    # data.noun offsets are byte offsets; every line starts with its own 8-digit offset, so lengths are fixed.
    header = "  1 a licence line, skipped  \n"
    bodies = {
        "animal": "03 n 01 animal 0 002 ~ {dog} n 0000 ~i {rex} n 0000 | a living thing",
        "dog": "05 n 02 dog 0 Canis_familiaris 0 002 @ {animal} n 0000 ~ {puppy} n 0000 | a domestic canine",
        "puppy": "05 n 01 puppy 0 001 @ {dog} n 0000 | a young dog",
        "rex": "18 n 01 Rex 0 001 @i {animal} n 0000 | a famous individual",
    }
    offsets, position = {}, len(header)
    for name, body in bodies.items():
        offsets[name] = position
        position += len(f"{0:08d} {body}  \n".format(**dict.fromkeys(bodies, "00000000")))
    padded = {name: f"{offset:08d}" for name, offset in offsets.items()}
    lines = [f"{offsets[name]:08d} {body.format(**padded)}  \n" for name, body in bodies.items()]
    (folder / "data.noun").write_text(header + "".join(lines))
    index = [f"{name} n 1 0 1 0 {offsets[name]:08d}  \n" for name in sorted(bodies)]
    (folder / "index.noun").write_text(header + "".join(index))
    return offsets


def test_toy_wordnet_follows_hyponyms_and_instances(tmp_path):
    offsets = _write_toy_wordnet(tmp_path)
    wordnet = WordNet(tmp_path)
    assert wordnet.synset_offset("dog.n.01") == offsets["dog"]
    assert wordnet.synset_offset("Rex.n.01") == offsets["rex"]  # lookups ignore case, like index.noun
    assert wordnet.lemmas(offsets["dog"]) == ["dog", "Canis_familiaris"]
    assert wordnet.gloss(offsets["puppy"]) == "a young dog"
    assert wordnet.hyponym_closure(offsets["animal"]) == set(offsets.values())
    assert wordnet.hyponym_closure(offsets["dog"]) == {offsets["dog"], offsets["puppy"]}
    assert wordnet.hyponym_closure(offsets["puppy"]) == {offsets["puppy"]}
    with pytest.raises(ValueError, match="not a noun synset offset"):
        wordnet.lemmas(offsets["dog"] + 1)
    for bad in (-1, "12", 1.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            wordnet.gloss(bad)


def test_missing_wordnet_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*index.noun and data.noun of WordNet 3.0"):
        WordNet(tmp_path / "nowhere")
    (tmp_path / "index.noun").write_text("")
    with pytest.raises(FileNotFoundError, match=r"lacks data\.noun.*wordnet-base"):
        WordNet(tmp_path)
    with pytest.raises(FileNotFoundError, match="no WordNet database found"):
        find_wordnet_dir([tmp_path / "nowhere"])


def test_malformed_index_is_a_value_error(tmp_path):
    (tmp_path / "index.noun").write_text("dog n seven\n")
    (tmp_path / "data.noun").write_text("")
    with pytest.raises(ValueError, match="line 1: not a WordNet 3.0 index line"):
        WordNet(tmp_path).synset_offset("dog.n.01")


# -- against the real WordNet 3.0 ------------------------------------------------------------------------------------


def test_wordnet_reader_on_hand_checked_facts(wordnet):
    dog = wordnet.synset_offset("dog.n.01")
    assert dog == 2084071
    assert wordnet.lemmas(dog) == ["dog", "domestic_dog", "Canis_familiaris"]
    assert "genus Canis" in wordnet.gloss(dog)
    assert wordnet.synset_offset("Dog.n.01") == wordnet.synset_offset("domestic dog.n.01") == dog
    cats = wordnet.hyponym_closure(wordnet.synset_offset("domestic_cat.n.01"))
    assert {wnid_to_offset("n02123045"), wnid_to_offset("n02124075")} <= cats  # tabby, Egyptian cat
    assert wnid_to_offset("n02125311") not in cats  # cougar
    assert wordnet.synset_offset("fire_hydrant.n.01") == wordnet.synset_offset("fireplug.n.01")


def test_wordnet_instance_hyponyms_are_followed(wordnet):
    capital = wordnet.synset_offset("national_capital.n.01")
    assert wordnet.synset_offset("paris.n.01") in wordnet.hyponym_closure(capital)


def test_every_noun_synset_is_below_entity(wordnet):
    data = (WORDNET_DIR / "data.noun").read_text(encoding="utf-8").splitlines()
    synsets = sum(1 for line in data if line and not line.startswith("  "))
    assert len(wordnet.hyponym_closure(wordnet.synset_offset("entity.n.01"))) == synsets


@pytest.mark.parametrize(
    "name, message",
    [
        ("dog", "expected a synset name"),
        ("dog.n", "expected a synset name"),
        ("dog.n.x1", "expected a synset name"),
        ("dog.v.01", "only noun synsets"),
        ("dog.n.00", "has senses 1..7, not 0"),
        ("dog.n.99", "has senses 1..7, not 99"),
        ("notaword_xyzzy.n.01", "is not a noun lemma"),
    ],
)
def test_bad_synset_names_raise(wordnet, name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        wordnet.synset_offset(name)


def test_every_imagenet_wnid_is_a_wordnet_synset(wordnet):
    for wnid in imagenet_wnids():
        assert wordnet.lemmas(wnid_to_offset(wnid))


def test_class_names_agree_with_wordnet_lemmas(wordnet):
    from var_utils.models import imagenet_class_names

    # torchvision disambiguates the two "crane"s and the two "maillot"s; every other name is a lemma.
    assert set(class_order_check(wordnet, imagenet_wnids(), imagenet_class_names())) == {134, 639}


def test_regenerated_table_equals_shipped_csv(wordnet):
    table = derive_coco_imagenet_table(wordnet, imagenet_wnids())
    assert table_to_csv(table) == SHIPPED_CSV.read_text(encoding="utf-8")
    pd.testing.assert_frame_equal(table, pd.read_csv(SHIPPED_CSV))


def test_derive_names_the_category_of_a_bad_synset(wordnet):
    bad = [CocoCategory(999, "gizmo", "thing", "gizmo_xyzzy.n.01")]
    with pytest.raises(ValueError, match=r"COCO category 999 \(gizmo\)"):
        derive_coco_imagenet_table(wordnet, imagenet_wnids(), bad)
    with pytest.raises(ValueError, match="is not a noun synset offset"):
        derive_coco_imagenet_table(wordnet, ["n00000001"])


def test_main_writes_table_and_docs(wordnet, tmp_path, capsys):
    out, docs = tmp_path / "table.csv", tmp_path / "docs" / "coco_classes.md"
    assert main(["--wordnet", str(WORDNET_DIR), "--out", str(out), "--docs", str(docs)]) == 0
    assert out.read_text(encoding="utf-8") == SHIPPED_CSV.read_text(encoding="utf-8")
    page = docs.read_text(encoding="utf-8")
    assert "## Categories with no ImageNet class" in page and "- 47 cup (`cup.n.01`)" in page
    assert "281 tabby, 282 tiger cat, 283 Persian cat, 284 Siamese cat, 285 Egyptian cat" in page
    if SHIPPED_DOCS.is_file():  # the shipped page is up to date with the generator
        assert page == SHIPPED_DOCS.read_text(encoding="utf-8")
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["coco_classes.md", "table.csv"]
    assert "wrote" in capsys.readouterr().out


def test_main_accepts_loc_synset_mapping(wordnet, tmp_path):
    loc = tmp_path / "LOC_synset_mapping.txt"
    loc.write_text("".join(f"{wnid} some name, other name\n" for wnid in imagenet_wnids()))
    out = tmp_path / "table.csv"
    assert main(["--wordnet", str(WORDNET_DIR), "--wnids", str(loc), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == SHIPPED_CSV.read_text(encoding="utf-8")


@pytest.mark.parametrize("option", ["--wordnet", "--wnids"])
def test_main_bad_path_exits_2_with_one_line(tmp_path, capsys, option):
    missing = tmp_path / "missing"
    argv = ["--out", str(tmp_path / "table.csv"), option, str(missing)]
    if option == "--wnids":
        argv += ["--wordnet", str(_wordnet_or_skip().directory)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error:" in error and str(missing) in error
    assert "Traceback" not in error
    assert not (tmp_path / "table.csv").exists()
