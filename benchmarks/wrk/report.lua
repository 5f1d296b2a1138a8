-- The figures every bench script prints when wrk is done, in the lines benchmarks/run.py reads:
-- latency percentiles in microseconds, and the requests with every kind of error counted.
return function(summary, latency, requests)
  for _, p in ipairs({50, 75, 90, 95, 99, 99.9}) do
    io.write(string.format("PERCENTILE %g %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("PERCENTILE 100 %d\n", latency.max))
  io.write(string.format("REQUESTS %d ERRORS %d\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
