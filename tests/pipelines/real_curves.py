"""Real ZTF light curves from ../shared/data as a detections table (read with fastavro, independently of the
pipeline's decoder): one row per detection, fluxes in nJy from magpsf and isdiffpos."""

from __future__ import annotations

import io
import math
from pathlib import Path

import fastavro
import pyarrow as pa

ZTF_FOLDERS = ["fink-2020-v3.3", "pittgoogle-2021-v3.3", "ampel-2018-v3.0", "ztf-avro-alert-samples"]


def ztf_detections(data_dir: Path) -> pa.Table:
    """``diaObjectId`` (a number per ZTF objectId), ``midpointMjdTai, band, psfFlux, psfFluxErr, reliability``,
    one row per candid, plus the alerts' ``ra`` and ``dec`` per object in ``objects``."""
    rows: dict[int, tuple] = {}
    ids: dict[str, int] = {}
    for folder in ZTF_FOLDERS:
        for path in sorted((data_dir / "alerts/ztf" / folder).glob("*.avro")):
            for alert in fastavro.reader(io.BytesIO(path.read_bytes())):
                assert isinstance(alert, dict)
                number = ids.setdefault(alert["objectId"], len(ids) + 1)
                for c in [alert["candidate"], *(alert["prv_candidates"] or [])]:
                    if c["candid"] is None or c["magpsf"] is None:
                        continue
                    sign = -1 if c["isdiffpos"] in ("f", "0") else 1
                    flux = sign * 10 ** ((31.4 - c["magpsf"]) / 2.5)
                    err = abs(flux) * c["sigmapsf"] * math.log(10) / 2.5
                    band = {1: "g", 2: "r", 3: "i"}[c["fid"]]
                    rows[c["candid"]] = (number, c["jd"] - 2400000.5, band, flux, err, c["rb"])
    names = ["diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "reliability"]
    columns = list(zip(*rows.values(), strict=True))
    types = [pa.int64(), pa.float64(), pa.string(), pa.float64(), pa.float64(), pa.float64()]
    return pa.table([pa.array(c, t) for c, t in zip(columns, types, strict=True)], names=names)
