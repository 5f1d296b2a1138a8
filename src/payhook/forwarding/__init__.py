"""Forwarding: post each due transaction to the team's own service (DESTINATION_URL), signed.

- `delivery`: what one delivery came to, read from the answer (or the lack of one);
- `health`: the destination's health gate: consecutive failures stop the sending, a probe
  resumes it, and deliveries held back meanwhile spend no attempt;
- `window`: how many deliveries may be in flight, narrowed by outages, widened by answers;
- `forwarder`: one pooled HTTP client per process, the signing, and the bounds on pressure
  (requests in flight, requests per second) shared by all of the process's deliveries;
- `step`: the processing step that forwards a due transaction and reads the result.
"""
