"""Example filters: the three the demo registers and the pipeline benchmark runs, one of each kind (a cut on
the alert, a join with the context, a join of objects with sources)."""

SAMPLE_FILTERS = {
    "bright_reliable": (
        "SELECT diaObjectId, diaSourceId, ra, dec, band, psfFlux, 31.4 - 2.5 * log10(psfFlux) AS mag, reliability "
        "FROM sources WHERE psfFlux > 30000 AND reliability > 0.8"
    ),
    "beside_galaxies": (
        "SELECT s.diaObjectId, s.diaSourceId, s.ra, s.dec, c.classification, c.catalogue_table_name, "
        "c.catalogue_object_id, c.separationArcsec, c.physical_separation_kpc FROM sources s "
        "JOIN context c USING (diaObjectId) WHERE NOT s.fromPacketHistory AND c.classification IN ('SN', 'NT')"
    ),
    "returning_objects": (
        "SELECT o.diaObjectId, o.ra, o.dec, o.nDiaSources, s.band, s.psfFlux "
        "FROM objects o JOIN sources s ON s.diaSourceId = o.lastDiaSourceId WHERE o.nDiaSources >= 5"
    ),
}
