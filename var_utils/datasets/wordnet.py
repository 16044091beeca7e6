"""A small offline reader of the WordNet 3.0 noun database (``index.noun`` and ``data.noun``).

ImageNet's class ids ("wnids", e.g. ``n02123045``) are WordNet 3.0 noun synset offsets, so the
hyponym hierarchy of WordNet says which ImageNet classes lie below a synset such as ``dog.n.01``.
Only what that needs is read: lemmas, glosses and the hyponym pointers of noun synsets.

The database format is described in ``man 5 wndb``. In ``data.noun`` every synset's offset is
also the byte offset of its line, so a synset is read by seeking to it; nothing is parsed up front.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from pathlib import Path

WORDNET_DIRS: tuple[Path, ...] = (Path("/usr/share/wordnet"),)
"""Folders searched, in order, when :class:`WordNet` is given no directory (Debian's ``wordnet-base``)."""

WORDNET_FILES = ("index.noun", "data.noun")
_EXPECTED = "expected index.noun and data.noun of WordNet 3.0 (Debian: apt-get install wordnet-base)"

# Pointer symbols followed downwards: hyponym and instance hyponym.
HYPONYM_POINTERS = frozenset({"~", "~i"})

_NAME_PATTERN = re.compile(r"(?P<lemma>.+)\.(?P<pos>[a-z])\.(?P<sense>\d+)")
_WNID_PATTERN = re.compile(r"n(\d{8})")
_LICENCE_PREFIX = "  "  # the licence header lines at the top of every database file


def find_wordnet_dir(candidates: Iterable[str | Path] = WORDNET_DIRS) -> Path:
    """The first folder of ``candidates`` that holds ``index.noun`` and ``data.noun``.

    Parameters
    ----------
    candidates : iterable of str or Path
        Folders to try, in order.

    Returns
    -------
    Path
        The first folder with both files.

    Raises
    ------
    FileNotFoundError
        If none of them has both files.
    """
    candidates = [Path(candidate) for candidate in candidates]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in WORDNET_FILES):
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates) or "no folders"
    raise FileNotFoundError(f"no WordNet database found (tried {tried}); {_EXPECTED}.")


def wnid_to_offset(wnid: str) -> int:
    """The synset offset of an ImageNet class id.

    Parameters
    ----------
    wnid : str
        ``"n"`` followed by 8 digits, e.g. ``"n02084071"``.

    Returns
    -------
    int
        The noun synset offset.

    Raises
    ------
    ValueError
        If ``wnid`` is not ``n`` + 8 digits.

    Examples
    --------
    >>> wnid_to_offset("n02084071")
    2084071
    """
    match = _WNID_PATTERN.fullmatch(wnid)
    if match is None:
        raise ValueError(f"expected a wnid 'n' + 8 digits such as 'n02084071', got {wnid!r}.")
    return int(match.group(1))


def offset_to_wnid(offset: int) -> str:
    """The ImageNet-style id of a noun synset offset.

    Parameters
    ----------
    offset : int
        A noun synset offset.

    Returns
    -------
    str
        ``"n"`` followed by the offset in 8 digits.

    Examples
    --------
    >>> offset_to_wnid(2084071)
    'n02084071'
    """
    return f"n{offset:08d}"


def _index_offsets(fields: list[str]) -> tuple[int, ...]:
    # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset... (offsets in sense order)
    synset_count, pointer_count = int(fields[2]), int(fields[3])
    if synset_count < 1 or len(fields) != 4 + pointer_count + 2 + synset_count:
        raise ValueError("the field count does not match synset_cnt and p_cnt")
    return tuple(int(field) for field in fields[-synset_count:])


class WordNet:
    """The noun part of a WordNet 3.0 database folder, read on demand.

    Parameters
    ----------
    directory : str or Path, optional
        Folder holding ``index.noun`` and ``data.noun``; ``None`` searches :data:`WORDNET_DIRS`.

    Raises
    ------
    FileNotFoundError
        If the folder (or, with ``None``, every folder searched) lacks ``index.noun`` or ``data.noun``.

    Notes
    -----
    With Debian's ``wordnet-base`` installed, ``WordNet().synset_offset("dog.n.01")``
    is 2084071, i.e. ImageNet's ``n02084071`` (``tests/test_coco_classes.py``
    checks it; the example is not a doctest because the database is optional).
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        if directory is None:
            directory = find_wordnet_dir()
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"WordNet directory {self.directory} does not exist; {_EXPECTED}.")
        missing = [name for name in WORDNET_FILES if not (self.directory / name).is_file()]
        if missing:
            raise FileNotFoundError(f"WordNet directory {self.directory} lacks {', '.join(missing)}; {_EXPECTED}.")
        self._senses: dict[str, tuple[int, ...]] | None = None
        self._data: bytes | None = None
        self._synsets: dict[int, tuple[tuple[str, ...], tuple[int, ...], str]] = {}

    def __repr__(self) -> str:
        return f"WordNet({str(self.directory)!r})"

    # -- index.noun: lemma -> synset offsets in sense order --------------------------------------------------------

    def _index(self) -> dict[str, tuple[int, ...]]:
        if self._senses is None:
            self._senses = self._read_index(self.directory / "index.noun")
        return self._senses

    @staticmethod
    def _read_index(path: Path) -> dict[str, tuple[int, ...]]:
        senses: dict[str, tuple[int, ...]] = {}
        with path.open(encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                if line.startswith(_LICENCE_PREFIX) or not line.strip():
                    continue
                fields = line.split()
                try:
                    senses[fields[0]] = _index_offsets(fields)
                except (IndexError, ValueError) as error:
                    message = f"{path}, line {line_number}: not a WordNet 3.0 index line"
                    raise ValueError(f"{message}; {_EXPECTED}.") from error
        if not senses:
            raise ValueError(f"{path} has no index lines; {_EXPECTED}.")
        return senses

    def synset_offset(self, name: str) -> int:
        """The offset of a noun synset named ``lemma.n.NN`` (NN: the lemma's sense number, from 1).

        Parameters
        ----------
        name : str
            E.g. ``"dog.n.01"``; spaces in the lemma may be written as underscores or spaces, any case.

        Returns
        -------
        int
            The synset offset in ``data.noun``.

        Raises
        ------
        ValueError
            If ``name`` is not ``lemma.n.NN``, the lemma is no noun, or it has fewer than NN senses.

        """
        match = _NAME_PATTERN.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise ValueError(f"expected a synset name 'lemma.n.NN' such as 'dog.n.01', got {name!r}.")
        if match["pos"] != "n":
            raise ValueError(f"{name!r}: only noun synsets ('.n.') are read, not part of speech {match['pos']!r}.")
        # index.noun keeps lemmas in lower case with underscores for spaces.
        lemma = match["lemma"].strip().lower().replace(" ", "_")
        offsets = self._index().get(lemma)
        if offsets is None:
            raise ValueError(f"{name!r}: {lemma!r} is not a noun lemma of the WordNet at {self.directory}.")
        sense = int(match["sense"])
        if not 1 <= sense <= len(offsets):
            raise ValueError(f"{name!r}: noun {lemma!r} has senses 1..{len(offsets)}, not {sense}.")
        return offsets[sense - 1]

    # -- data.noun: one synset per line, at the byte offset that is its id -----------------------------------------

    def _synset(self, offset: int) -> tuple[tuple[str, ...], tuple[int, ...], str]:
        synset = self._synsets.get(offset)
        if synset is None:
            synset = self._synsets[offset] = self._read_synset(offset)
        return synset

    def _read_synset(self, offset: int) -> tuple[tuple[str, ...], tuple[int, ...], str]:
        try:
            position = operator.index(offset)  # accepts numpy integers too
        except TypeError:
            position = -1
        if position < 0 or isinstance(offset, bool):
            raise ValueError(f"expected a non-negative integer synset offset, got {offset!r}.")
        offset = position
        if self._data is None:
            self._data = (self.directory / "data.noun").read_bytes()
        data = self._data
        # A real synset line starts exactly at its offset, with the offset in 8 digits.
        if not data.startswith(b"%08d " % offset, offset) or (offset > 0 and data[offset - 1 : offset] != b"\n"):
            raise ValueError(f"{offset} is not a noun synset offset of {self.directory / 'data.noun'}.")
        end = data.find(b"\n", offset)
        line = data[offset : end if end >= 0 else len(data)].decode("utf-8")
        try:
            return self._parse_synset_line(line)
        except (IndexError, ValueError) as error:
            message = f"{self.directory / 'data.noun'}, offset {offset}: not a WordNet 3.0 data line"
            raise ValueError(f"{message}; {_EXPECTED}.") from error

    @staticmethod
    def _parse_synset_line(line: str) -> tuple[tuple[str, ...], tuple[int, ...], str]:
        # offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] | gloss
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        word_count = int(fields[3], 16)
        lemmas = tuple(fields[4 : 4 + 2 * word_count : 2])
        pointer_start = 4 + 2 * word_count
        pointer_count = int(fields[pointer_start])
        hyponyms = []
        for index in range(pointer_count):
            symbol, target, pos = fields[pointer_start + 1 + 4 * index : pointer_start + 4 + 4 * index]
            if symbol in HYPONYM_POINTERS and pos == "n":
                hyponyms.append(int(target))
        if len(lemmas) != word_count:
            raise ValueError("truncated word list")
        return lemmas, tuple(hyponyms), gloss.strip()

    def lemmas(self, offset: int) -> list[str]:
        """The words of a synset, in the database's order and case (underscores for spaces).

        Parameters
        ----------
        offset : int
            A noun synset offset.

        Returns
        -------
        list of str
            E.g. ``["dog", "domestic_dog", "Canis_familiaris"]`` for 2084071.

        Raises
        ------
        ValueError
            If ``offset`` is not a synset of ``data.noun``.
        """
        return list(self._synset(offset)[0])

    def gloss(self, offset: int) -> str:
        """The definition (and example sentences) of a synset.

        Parameters
        ----------
        offset : int
            A noun synset offset.

        Returns
        -------
        str
            The text after ``|`` on the synset's line.

        Raises
        ------
        ValueError
            If ``offset`` is not a synset of ``data.noun``.
        """
        return self._synset(offset)[2]

    def hyponyms(self, offset: int) -> list[int]:
        """The synsets directly below ``offset``: its hyponyms (``~``) and instance hyponyms (``~i``).

        Parameters
        ----------
        offset : int
            A noun synset offset.

        Returns
        -------
        list of int
            Offsets in the database's order.

        Raises
        ------
        ValueError
            If ``offset`` is not a synset of ``data.noun``.
        """
        return list(self._synset(offset)[1])

    def hyponym_closure(self, offset: int) -> set[int]:
        """The synset itself and every synset below it, following ``~`` and ``~i`` transitively.

        Parameters
        ----------
        offset : int
            A noun synset offset.

        Returns
        -------
        set of int
            Offsets, ``offset`` included.

        Raises
        ------
        ValueError
            If ``offset`` (or a synset it points to) is not a synset of ``data.noun``.
        """
        closure = {offset}
        pending = [offset]
        while pending:
            for hyponym in self._synset(pending.pop())[1]:
                if hyponym not in closure:
                    closure.add(hyponym)
                    pending.append(hyponym)
        return closure
