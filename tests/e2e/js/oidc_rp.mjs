// A real relying party (openid-client v6) signing in through the waiting room of a live server.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI.
// Protocol with the test on stdout, one line each:
//   "WAITING <position>"  the visitor is parked on the waiting page; the test must admit it now;
//   "RESULT <json>"       everything this relying party saw and checked.
// Any failed check exits non-zero with the reason on stderr.
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const ISSUER = process.env.ISSUER;
const CLIENT_ID = process.env.CLIENT_ID;
const CLIENT_SECRET = process.env.CLIENT_SECRET;
const REDIRECT_URI = process.env.REDIRECT_URI;
const DEADLINE = Date.now() + 60_000;

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// A browser that follows nothing by itself: a cookie jar and manual redirects.
const jar = new Map();
async function browse(url) {
  const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const response = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const index = pair.indexOf('=');
    jar.set(pair.slice(0, index).trim(), pair.slice(index + 1).trim());
  }
  return response;
}

// Follow the authorization request through the waiting page until the redirect to the relying party.
async function signIn(authorizationUrl) {
  let url = new URL(authorizationUrl);
  let waited = false;
  for (;;) {
    check(Date.now() < DEADLINE, 'the sign-in took more than 60 s');
    const response = await browse(url);
    if (response.status === 303 || response.status === 302) {
      const next = new URL(response.headers.get('location'), url);
      if (next.href.startsWith(REDIRECT_URI)) return { callback: next, waited };
      url = next;
      continue;
    }
    check(response.status === 200, `unexpected status ${response.status} at ${url.pathname}`);
    const html = await response.text();
    check(/http-equiv="refresh"/.test(html), 'the waiting page reloads itself without JavaScript');
    const statusPath = html.match(/data-status-url="([^"]+)"/)[1];
    const status = await (await browse(new URL(statusPath, url))).json();
    if (!waited) {
      check(status.state === 'waiting', `status JSON says ${status.state}`);
      waited = true;
      process.stdout.write(`WAITING ${status.position}\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function run(method) {
  const auth = method === 'post' ? client.ClientSecretPost(CLIENT_SECRET) : client.ClientSecretBasic(CLIENT_SECRET);
  const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, auth,
    { execute: [client.allowInsecureRequests] });
  client.enableNonRepudiationChecks(config); // verify ID token signatures against jwks_uri
  const metadata = config.serverMetadata();
  check(metadata.issuer === ISSUER, 'discovery issuer');
  check(metadata.authorization_response_iss_parameter_supported === true, 'RFC 9207 advertised');

  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const nonce = client.randomNonce();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI, scope: 'openid email', code_challenge: challenge,
    code_challenge_method: 'S256', nonce, state,
  });
  const { callback, waited } = await signIn(url);
  check(callback.searchParams.get('iss') === ISSUER, 'RFC 9207 iss in the authorization response');
  check(callback.searchParams.get('state') === state, 'state round trip');

  // A tampered iss must be refused by the relying party (RFC 9207 mix-up defence).
  const tampered = new URL(callback);
  tampered.searchParams.set('iss', 'https://attacker.example');
  let refused = false;
  try {
    await client.authorizationCodeGrant(config, tampered, { pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state });
  } catch {
    refused = true;
  }
  check(refused, 'a callback with another iss is refused');

  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state, idTokenExpected: true,
  });
  const claims = tokens.claims();
  check(claims.nonce === nonce, 'nonce echoed');
  check(claims.aud === CLIENT_ID && claims.iss === ISSUER, 'aud and iss');
  check(typeof claims.auth_time === 'number', 'auth_time present');

  // An independent JWKS check, as a generic relying party would do it.
  const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
  const verified = await jwtVerify(tokens.id_token, jwks, { issuer: ISSUER, audience: CLIENT_ID });
  check(typeof verified.protectedHeader.kid === 'string', 'kid in the ID token header');

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  check(refreshed.claims().auth_time === claims.auth_time, 'refresh keeps auth_time');
  const introspection = await client.tokenIntrospection(config, tokens.access_token);
  check(introspection.active === true, 'introspection says active');
  return { method, waited, sub: claims.sub, claims, userinfo, kid: verified.protectedHeader.kid,
    expires_in: tokens.expires_in };
}

try {
  const basic = await run('basic');
  const post = await run('post');
  process.stdout.write(`RESULT ${JSON.stringify({ basic, post })}\n`);
} catch (error) {
  process.stderr.write(`${error.stack || error}\n${error.cause ? JSON.stringify(error.cause) : ''}\n`);
  process.exit(1);
}
