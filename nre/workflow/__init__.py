"""What the Snakemake workflow asks of the library: config checks, the job plan, chunks, cluster support."""
