"""Reading a watchlist's cones: Lasair's CSV layout, Parquet, or a catalogue already imported.

Lasair's layout is one cone per line, ``RA, Dec, ID[, radius]``, separated by commas or ``|``, with an optional
header line; RA and Dec in decimal degrees or sexagesimal (RA in hours, ``12:34:56.7`` or ``12 34 56.7``; Dec in
degrees, ``-05:06:07``), the radius in arcseconds (the list's default radius when absent). Lines starting with
``#`` and blank lines are skipped. Every bad line is reported with its number and the problem, and nothing is
returned: a file is taken whole or not at all.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from astropy.coordinates import Angle

from nightjar.catalogs import layout
from nightjar.errors import UserError
from nightjar.storage import CatalogsHome, catalogs_root

MAX_RADIUS_ARCSEC = 1800.0  # a cone's radius, and a list's default, at most 30′
MAX_NAME = 200
MAX_ERRORS = 20  # bad lines listed in one error (the count of the others is given)
CATALOG_PREFIX = "catalog:"

CONES_SCHEMA = pa.schema(
    [
        pa.field("coneId", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
        pa.field("radius", pa.float64()),  # arcsec; null: the list's default radius
    ]
)


class WatchFileError(UserError):
    """A cone file that cannot be read; the message names each bad line and its problem."""


def check_radius(radius: float, what: str = "the default radius") -> float:
    """``radius`` in arcsec if it is finite, positive and at most ``MAX_RADIUS_ARCSEC``; a WatchFileError naming
    ``what`` otherwise."""
    if not (np.isfinite(radius) and 0 < radius <= MAX_RADIUS_ARCSEC):
        raise WatchFileError(f"{what} must be > 0 and at most {MAX_RADIUS_ARCSEC:g} arcsec, not {radius:g}")
    return float(radius)


_SEXAGESIMAL = re.compile(
    r"^[+-]?\d{1,3}([: ]\d{1,2}([: ]\d{1,2}(\.\d*)?)?)$|^[+-]?[\d.]+[hd°][\d.]*[m']?[\d.]*[s\"]?$"
)


def _sexagesimal(text: str, hours: bool) -> float:
    """A sexagesimal angle in degrees (RA in hours, ``12:34:56.7``, ``12 34 56.7`` or ``12h34m56.7s``; Dec in
    degrees); ValueError if it is not one."""
    text = " ".join(text.split())
    if not _SEXAGESIMAL.match(text):
        raise ValueError(text)
    return float(Angle(text.replace(":", " "), unit="hourangle" if hours else "deg").degree)


def _angles(values: np.ndarray, hours: bool) -> tuple[np.ndarray, np.ndarray]:
    """(degrees, ok) of text values: decimal degrees, else sexagesimal."""
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, copy=True)
    ok = np.isfinite(numbers)
    for i in np.flatnonzero(~ok):
        text = str(values[i]).strip()
        if not text:
            continue
        try:
            numbers[i] = _sexagesimal(text, hours)
            ok[i] = np.isfinite(numbers[i])
        except (ValueError, TypeError, IndexError):
            pass
    return numbers, ok


class _Problems:
    def __init__(self, where: str) -> None:
        self.where = where  # "line" or "row"
        self.items: list[tuple[int, str]] = []

    def add(self, numbers: np.ndarray, bad: np.ndarray, message: str | list[str]) -> None:
        for k, i in enumerate(np.flatnonzero(bad)):
            text = message[k] if isinstance(message, list) else message
            self.items.append((int(numbers[i]), text))

    def raise_if_any(self, source: str) -> None:
        if not self.items:
            return
        self.items.sort(key=lambda item: item[0])
        shown = [f"{self.where} {n}: {text}" for n, text in self.items[:MAX_ERRORS]]
        more = len(self.items) - MAX_ERRORS
        tail = f"\n... and {more} more bad {self.where}s" if more > 0 else ""
        raise WatchFileError(
            f"{source}: {len(self.items)} bad {self.where}(s), nothing was created:\n" + "\n".join(shown) + tail
        )


def _not_angle(what: str, value: object) -> str:
    if value is None or not str(value).strip():
        return f"{what} is missing"
    return f"{what} {str(value)!r} is not a number of degrees or a sexagesimal angle"


def _validate(
    numbers: np.ndarray,
    ra_text: np.ndarray,
    dec_text: np.ndarray,
    names: np.ndarray,
    radius_text: np.ndarray | None,
    problems: _Problems,
) -> pa.Table:
    ra, ra_ok = _angles(ra_text, hours=True)
    dec, dec_ok = _angles(dec_text, hours=False)
    problems.add(numbers, ~ra_ok, [_not_angle("RA", v) for v in ra_text[~ra_ok]])
    problems.add(
        numbers,
        ~dec_ok,
        [_not_angle("Dec", v) for v in dec_text[~dec_ok]],
    )
    bad_ra = ra_ok & ~((ra >= 0) & (ra <= 360))
    problems.add(numbers, bad_ra, [f"RA {v:g} is outside 0..360 degrees" for v in ra[bad_ra]])
    bad_dec = dec_ok & ~((dec >= -90) & (dec <= 90))
    problems.add(numbers, bad_dec, [f"Dec {v:g} is outside -90..90 degrees" for v in dec[bad_dec]])
    clean = np.array([str(n).strip() if n is not None else "" for n in names], dtype=object)
    empty = np.array([not n for n in clean], dtype=bool)
    problems.add(numbers, empty, "the cone has no ID (the third field)")
    long = np.array([len(n) > MAX_NAME for n in clean], dtype=bool)
    problems.add(numbers, long, f"the ID is longer than {MAX_NAME} characters")
    radius = np.full(len(numbers), np.nan)
    if radius_text is not None:
        given = np.array([v is not None and str(v).strip() != "" for v in radius_text], dtype=bool)
        parsed = pd.to_numeric(pd.Series(radius_text), errors="coerce").to_numpy(dtype=np.float64)
        not_number = given & ~np.isfinite(parsed)
        problems.add(
            numbers, not_number, [f"radius {str(v)!r} is not a number of arcsec" for v in radius_text[not_number]]
        )
        out = given & np.isfinite(parsed) & ~((parsed > 0) & (parsed <= MAX_RADIUS_ARCSEC))
        problems.add(numbers, out, [f"radius {v:g} arcsec is outside (0, {MAX_RADIUS_ARCSEC:g}]" for v in parsed[out]])
        radius = np.where(given, parsed, np.nan)
    ra = np.where(ra == 360.0, 0.0, ra)
    return pa.table(
        {
            "coneId": pa.array(np.arange(1, len(numbers) + 1, dtype=np.int64)),
            "name": pa.array(clean.tolist(), pa.string()),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "radius": pa.array(radius, mask=np.isnan(radius)),
        },
        schema=CONES_SCHEMA,
    )


def _fast_csv(data: bytes) -> pa.Table | None:
    """Cones from a plain CSV (decimal degrees, one separator, the same fields on every line, no comments) read by
    Arrow's reader, or None when the file is anything else or has a bad line: the line-by-line reader then reads
    it, and names each bad line. 10^7 cones take seconds this way, minutes line by line."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf")
    if b"#" in data or not head.strip():
        return None
    first = head.lstrip().split(b"\n", 1)[0]
    delimiter = "|" if b"|" in first else ","
    if first.strip().startswith(b"|"):
        return None
    fields = first.split(delimiter.encode())
    if len(fields) not in (3, 4):
        return None
    try:
        float(fields[0])
        header = False
    except ValueError:
        # A header names its columns; a first cone in sexagesimal (digits) is read line by line instead.
        if not re.fullmatch(rb"[A-Za-z_ \"']+", fields[0].strip()):
            return None
        header = True
    names = ["ra", "dec", "name", "radius"][: len(fields)]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data.lstrip(b"\xef\xbb\xbf")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={"ra": pa.float64(), "dec": pa.float64(), "name": pa.string(), "radius": pa.float64()},
                null_values=[""],
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if table.num_rows == 0:
        return None
    ra, dec = table["ra"], table["dec"]
    names_ok = pc.and_(
        pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table["name"])), 0),
        pc.less_equal(pc.utf8_length(table["name"]), MAX_NAME),
    )
    checks = [
        pc.and_(pc.greater_equal(ra, 0.0), pc.less_equal(ra, 360.0)),
        pc.and_(pc.greater_equal(dec, -90.0), pc.less_equal(dec, 90.0)),
        names_ok,
    ]
    if "radius" in table.column_names:
        radius = table["radius"]
        checks.append(
            pc.or_kleene(pc.is_null(radius), pc.and_(pc.greater(radius, 0.0), pc.less_equal(radius, MAX_RADIUS_ARCSEC)))
        )
    for check in checks:
        if not pc.all(pc.fill_null(check, False)).as_py():
            return None
    n = table.num_rows
    ra_values = np.where(ra.to_numpy() == 360.0, 0.0, ra.to_numpy())
    return pa.table(
        {
            "coneId": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "name": pc.utf8_trim_whitespace(table["name"]),
            "ra": pa.array(ra_values),
            "dec": dec,
            "radius": table["radius"] if "radius" in table.column_names else pa.nulls(n, pa.float64()),
        },
        schema=CONES_SCHEMA,
    )


def read_csv_text(text: str, source: str = "the file") -> pa.Table:
    """Cones from CSV text in Lasair's layout (see the module); a WatchFileError naming every bad line."""
    fast = _fast_csv(text.encode("utf-8"))
    return fast if fast is not None else read_lines(text, source)


def read_lines(text: str, source: str = "the file") -> pa.Table:
    """``read_csv_text`` line by line: every layout, and the line-numbered errors."""
    lines = text.splitlines()
    rows: list[list[str]] = []
    numbers: list[int] = []
    problems = _Problems("line")
    header_checked = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        delimiter = "|" if "|" in stripped else ","
        fields = [f.strip() for f in next(csv.reader(io.StringIO(stripped), delimiter=delimiter))]
        if delimiter == "|" and fields and fields[0] == "":  # |ra|dec|id| tables
            fields = fields[1:]
        if delimiter == "|" and fields and fields[-1] == "":
            fields = fields[:-1]
        if not header_checked:
            header_checked = True
            _, ok = _angles(np.array([fields[0] if fields else ""], dtype=object), hours=True)
            if not ok[0]:
                continue  # a header line
        if len(fields) < 3 or len(fields) > 4:
            problems.items.append((number, f"expected 3 or 4 fields (RA, Dec, ID[, radius]), found {len(fields)}"))
            continue
        rows.append(fields + [""] * (4 - len(fields)))
        numbers.append(number)
    if not rows and not problems.items:
        raise WatchFileError(f"{source}: no cones (lines of RA, Dec, ID[, radius])")
    columns = np.array(rows, dtype=object).reshape(-1, 4) if rows else np.empty((0, 4), dtype=object)
    at = np.array(numbers, dtype=np.int64)
    table = _validate(at, columns[:, 0], columns[:, 1], columns[:, 2], columns[:, 3], problems)
    problems.raise_if_any(source)
    return table


def _pick(names: list[str], *wanted: str) -> str | None:
    lower = {n.lower(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def read_parquet(path: Path) -> pa.Table:
    """Cones from a Parquet file with columns ``ra``, ``dec``, optionally an ID (``name``, ``id``, ``objectId`` …;
    else the row number) and ``radius`` (arcsec); rows are numbered from 1 in errors."""
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise WatchFileError(f"{path}: not a readable Parquet file ({exc})") from None
    names = table.column_names
    ra = _pick(names, "ra", "ra_deg", "radeg", "raj2000")
    dec = _pick(names, "dec", "decl", "dec_deg", "decdeg", "dej2000")
    ident = _pick(names, "name", "id", "objectid", "object_id", "coneid")
    radius = _pick(names, "radius", "radius_arcsec")
    missing = [what for what, col in (("ra", ra), ("dec", dec)) if col is None]
    if missing:
        raise WatchFileError(f"{path}: no column for {', '.join(missing)} (columns: {', '.join(names)})")
    assert ra is not None and dec is not None
    if table.num_rows == 0:
        raise WatchFileError(f"{path}: no cones")
    problems = _Problems("row")

    def text(col: str) -> np.ndarray:
        return np.array(pc.cast(table[col], pa.string()).to_pylist(), dtype=object)

    cones = _validate(
        np.arange(1, table.num_rows + 1),
        text(ra),
        text(dec),
        text(ident) if ident is not None else np.array([str(i) for i in range(1, table.num_rows + 1)], dtype=object),
        text(radius) if radius is not None else None,
        problems,
    )
    problems.raise_if_any(str(path))
    return cones


def read_catalog(home: CatalogsHome, name: str) -> pa.Table:
    """Cones at every row of a catalogue already imported (``nightjar catalog import``), named by its IDs."""
    where = catalogs_root(home)
    fs = where.filesystem()
    collection = layout.collection_dir(where, name)
    primary = layout.primary_dir(collection) / layout.DATASET_DIR
    if fs.get_file_info(str(primary)).type != pafs.FileType.Directory:
        raise WatchFileError(f"no catalogue {name!r} (nightjar catalog list shows the imported ones)")
    files = [
        f.path
        for f in fs.get_file_info(pafs.FileSelector(str(primary), recursive=True))
        if f.is_file and PurePosixPath(f.path).name.startswith("Npix=")
    ]
    table = ds.dataset(sorted(files), format="parquet", filesystem=fs).to_table(
        columns=[layout.RA, layout.DEC, layout.OBJECT_ID]
    )
    ids = pc.cast(table[layout.OBJECT_ID], pa.string())
    numbered = pa.array([str(i) for i in range(1, table.num_rows + 1)])
    names = pc.if_else(pc.is_valid(ids), ids, pc.binary_join_element_wise(f"{name}-", numbered, ""))
    return pa.table(
        {
            "coneId": pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)),
            "name": names,
            "ra": table[layout.RA],
            "dec": table[layout.DEC],
            "radius": pa.nulls(table.num_rows, pa.float64()),
        },
        schema=CONES_SCHEMA,
    )


def read_cones(source: str | Path, home: CatalogsHome | None = None) -> pa.Table:
    """Cones from a CSV or Parquet file, or ``catalog:NAME`` (an imported catalogue, with ``home``: the Nightjar
    home or ``Settings.catalogs``)."""
    text = str(source)
    if text.startswith(CATALOG_PREFIX):
        if home is None:
            raise WatchFileError("a catalogue source needs a Nightjar home")
        return read_catalog(home, text.removeprefix(CATALOG_PREFIX))
    path = Path(source)
    if not path.is_file():
        raise WatchFileError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return read_parquet(path)
    data = path.read_bytes()
    fast = _fast_csv(data)
    if fast is not None:
        return fast
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WatchFileError(f"{path}: neither Parquet nor UTF-8 text (CSV)") from None
    return read_lines(content, str(path))
