"""Running the localizers: train, evaluate (mAP), predict, compare, and the Snakemake-script glue."""
