"use strict";

const params = new URLSearchParams(location.search);
const API = params.get("api");
const EVENT = params.get("event");
const show = (id, value) => { document.getElementById(id).textContent = String(value); };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    // application/json makes the browser send a preflight first.
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  return { status: response.status, body: await response.json() };
}

async function run() {
  show("state", "joining");
  const joined = await call("POST", "/api/assign_queue_num", { event_id: EVENT });
  const requestId = joined.body.api_request_id;
  let position = null;
  while (position === null) {
    const place = await call("GET", `/api/queue_num?event_id=${EVENT}&request_id=${requestId}`);
    if (place.status === 200) position = place.body.queue_number;
    else await sleep(200);
  }
  show("position", position);
  show("state", "waiting");
  for (;;) {
    const serving = await call("GET", `/api/serving_num?event_id=${EVENT}`);
    const waiting = await call("GET", `/api/waiting_num?event_id=${EVENT}`);
    show("serving", serving.body.serving_counter);
    show("waiting", waiting.body.waiting_num);
    if (serving.body.serving_counter >= position) break;
    await sleep(200);
  }
  const token = await call("POST", "/api/generate_token", { event_id: EVENT, request_id: requestId });
  if (token.status !== 200) throw new Error(`generate_token answered ${token.status}`);
  window.tokenSet = token.body;
  show("state", "done");
}

run().catch((error) => {
  show("state", "failed");
  show("error", `${error.name}: ${error.message}`);
});
