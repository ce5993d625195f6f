"""Real catalogues from ``../shared/data/catalogs``, imported once per session with the session's Dask cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from nightjar.catalogs.build import BuildSpec
from nightjar.catalogs.catalog import CatalogSet, ColumnMap, load_catalog_set
from nightjar.catalogs.demo import OPENNGC_COLUMNS
from nightjar.catalogs.import_catalog import import_catalog
from nightjar.catalogs.rules import Kind
from nightjar.storage import CatalogsHome

CV_TYPES = ["UG", "UGSU", "UGSS", "UGZ", "NL", "N", "NA", "NB", "NR", "NC", "AM", "DQ"]


@dataclass(frozen=True)
class Source:
    """A real catalogue file and how to import it."""

    name: str
    files: tuple[str, ...]
    kind: Kind
    columns: ColumnMap
    partition_rows: int = 1_000_000
    mag_filter: str | None = None

    def paths(self, data_dir: Path) -> list[Path]:
        return [data_dir / "catalogs" / f for f in self.files]

    def read(self, data_dir: Path) -> pa.Table:
        return pa.concat_tables([pq.read_table(p) for p in self.paths(data_dir)], promote_options="permissive")


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "openngc",
            ("openngc/openngc_objects.parquet",),
            Kind.GALAXY,
            OPENNGC_COLUMNS,  # the shared parquet has the same columns as the demo's pyongc table
            partition_rows=2000,
            mag_filter="B",
        ),
        Source(
            "hipparcos",
            ("hipparcos-bright/hipparcos_bright.parquet",),
            Kind.BRIGHT_STAR,
            ColumnMap(ra="ra_deg", dec="dec_deg", id="HIP", mag="Vmag", type="SpType"),
            mag_filter="V",
        ),
        # Small partitions: many partition edges, so margins matter.
        Source("gcvs", ("gcvs/gcvs.parquet",), Kind.VARIABLE, ColumnMap(ra="ra", dec="dec", type="VarType"), 4000),
        Source(
            "gcvs-cv",
            ("gcvs/gcvs.parquet",),
            Kind.CV,
            ColumnMap(ra="ra", dec="dec", type="VarType", keep_types=CV_TYPES),
        ),
        Source(
            "3hsp",
            ("3hsp/3hsp.parquet",),
            Kind.AGN,
            ColumnMap(ra="ra_deg", dec="dec_deg", id="3HSP Source name"),
        ),
        Source(
            "4lac",
            ("4lac/table-4LAC-DR3-h.parquet", "4lac/table-4LAC-DR3-l.parquet"),
            Kind.AGN,
            ColumnMap(ra="RA_Counterpart", dec="DEC_Counterpart", id="Source_Name", z="Redshift", type="CLASS"),
        ),
        Source("spicy", ("spicy/spicy.parquet",), Kind.YSO, ColumnMap(ra="RAdeg", dec="DEdeg", type="class"), 50_000),
    ]
}


def import_source(client: Client, home: CatalogsHome, data_dir: Path, source: Source) -> None:
    spec = BuildSpec(
        name=source.name,
        kind=source.kind,
        columns=source.columns,
        sources=tuple(str(p) for p in source.paths(data_dir)),
        partition_rows=source.partition_rows,
        mag_filter=source.mag_filter,
    )
    import_catalog(client, home, spec, source.paths(data_dir))


@pytest.fixture(scope="session")
def catalog_sources() -> dict[str, Source]:
    """How each real catalogue is imported (test modules cannot import conftest)."""
    return SOURCES


@pytest.fixture(scope="session")
def catalog_home(tmp_path_factory: pytest.TempPathFactory, dask_client: Client, data_dir: Path) -> Path:
    """A Nightjar home with every real catalogue imported."""
    home = tmp_path_factory.mktemp("catalog-home")
    for source in SOURCES.values():
        import_source(dask_client, home, data_dir, source)
    return home


@pytest.fixture(scope="session")
def real_catalogs(catalog_home: Path) -> CatalogSet:
    return load_catalog_set(catalog_home)
