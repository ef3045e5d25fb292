#!/bin/sh
# Run one event through the admin API. Needs BASE (the service URL), ADMIN_KEY (scope admin), curl, jq.
set -eu
AUTH="Authorization: Bearer $ADMIN_KEY"
JSON="Content-Type: application/json"
api() { curl -sS --fail-with-body -H "$AUTH" -H "$JSON" "$@"; }

echo "== create the event"
api -X POST "$BASE/admin/api/events" \
  -d '{"event_id": "concert", "name": "Concert", "queue_position_expiry_period": 900, "token_validity_period": 3600}' \
  | jq -c '{event_id, name}'

echo "== register a relying party (its client_secret is shown only now)"
api -X POST "$BASE/admin/api/clients" \
  -d '{"event_id": "concert", "name": "Shop", "redirect_uris": ["https://shop.example/oidc/callback"],
       "initiate_login_uri": "https://shop.example/login"}' \
  | jq -c '{client_id, event_id, has_secret: (.client_secret | length > 0)}'

echo "== two visitors join"
FIRST=$(curl -sS --fail-with-body -X POST "$BASE/api/assign_queue_num" -H "$JSON" -d '{"event_id": "concert"}' \
  | jq -r .api_request_id)
curl -sS --fail-with-body -X POST "$BASE/api/assign_queue_num" -H "$JSON" -d '{"event_id": "concert"}' \
  | jq -c '{queue_number}'

echo "== admit one"
api -X POST "$BASE/admin/api/increment_serving_counter" -d '{"event_id": "concert", "increment_by": 1}'
echo

echo "== the first visitor's token set"
ACCESS=$(api -X POST "$BASE/admin/api/generate_token" -d "{\"event_id\": \"concert\", \"request_id\": \"$FIRST\"}" \
  | jq -r .access_token)
curl -sS -o /dev/null -w 'verify: %{http_code}\n' "$BASE/verify?event_id=concert" -H "Authorization: Bearer $ACCESS"

echo "== stats"
api "$BASE/admin/api/events/concert/stats" | jq -c '{queue, serving, waiting, tokens, active_tokens}'

echo "== the visitor is done on the site"
api -X POST "$BASE/admin/api/update_session" \
  -d "{\"event_id\": \"concert\", \"request_id\": \"$FIRST\", \"status\": 1}" | jq -c '{status}'
api "$BASE/admin/api/num_active_tokens?event_id=concert"
echo

echo "== start over"
api -X POST "$BASE/admin/api/reset_initial_state" -d '{"event_id": "concert"}' | jq -c '{event_id}'
curl -sS --fail-with-body -X POST "$BASE/api/assign_queue_num" -H "$JSON" -d '{"event_id": "concert"}' \
  | jq -c '{queue_number}'
