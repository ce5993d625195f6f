"""HEALPix-partitioned Parquet catalogues (HATS layout) and context crossmatching against them."""
