"""Processing: run the step for each due transaction once, under a lease, with bounded retries."""
