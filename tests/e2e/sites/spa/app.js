"use strict";

const show = (id, value) => { document.getElementById(id).textContent = String(value); };
const query = new URLSearchParams(location.search);
if (query.get("authority")) {
  sessionStorage.setItem("spa-config", JSON.stringify({ authority: query.get("authority"), client_id: query.get("client_id") }));
}
const config = JSON.parse(sessionStorage.getItem("spa-config"));
const manager = new oidc.UserManager({
  authority: config.authority,
  client_id: config.client_id,
  redirect_uri: location.origin + "/index.html",
  response_type: "code",
  scope: "openid email",
  loadUserInfo: true,
  automaticSilentRenew: false,
  userStore: new oidc.WebStorageStateStore({ store: window.sessionStorage }),
});

function b64url(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

// Verify the ID token's RS256 signature with the provider's JWKS (fetched across origins).
async function verifyIdToken(idToken) {
  const [header, payload, signature] = idToken.split(".");
  const { kid, alg } = JSON.parse(new TextDecoder().decode(b64url(header)));
  const keys = await manager.metadataService.getSigningKeys();
  const jwk = keys.find((k) => k.kid === kid);
  if (!jwk || alg !== "RS256") return false;
  const key = await crypto.subtle.importKey("jwk", jwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
  return crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, b64url(signature), new TextEncoder().encode(`${header}.${payload}`));
}

async function refreshRaw(refreshToken) {
  const endpoint = await manager.metadataService.getTokenEndpoint();
  const response = await fetch(endpoint, {
    method: "POST",
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken, client_id: config.client_id }),
  });
  return { status: response.status, body: await response.json() };
}

async function afterSignIn() {
  const result = {};
  const user = await manager.signinRedirectCallback();
  history.replaceState(null, "", "/index.html");
  result.sub = user.profile.sub;
  result.email = user.profile.email;  // from userinfo (loadUserInfo)
  result.queuePosition = user.profile.queue_position;
  result.idTokenVerified = await verifyIdToken(user.id_token);
  const first = user.refresh_token;
  show("state", "signed-in");

  const refreshed = await manager.signinSilent();  // the refresh_token grant
  result.refreshedSub = refreshed.profile.sub;
  result.rotated = Boolean(refreshed.refresh_token) && refreshed.refresh_token !== first;
  result.accessTokenChanged = refreshed.access_token !== user.access_token;

  const replay = await refreshRaw(first);
  result.replayStatus = replay.status;
  result.replayError = replay.body.error;
  try {
    await manager.signinSilent();
    result.afterReplay = "accepted";
  } catch (error) {
    result.afterReplay = "refused";
  }
  window.result = result;
  show("state", "done");
}

async function main() {
  if (query.get("code") || query.get("error")) return afterSignIn();
  if (query.get("start")) {
    show("state", "redirecting");
    return manager.signinRedirect({ state: { from: "spa" } });
  }
  show("state", "idle");
}

main().catch((error) => {
  show("state", "failed");
  show("error", `${error.name}: ${error.message}`);
});
