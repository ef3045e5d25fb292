-- wrk script: POST /api/assign_queue_num for the benchmark event.
wrk.method = "POST"
wrk.body = '{"event_id":"bench"}'
wrk.headers["Content-Type"] = "application/json"
