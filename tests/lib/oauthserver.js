// A real OAuth 2.0 authorization server for popbridge's tests: oidc-provider
// (pinned in tests/lib/package.json, installed by tests/lib/deps.sh into
// build/oauth-node), started by tests/lib/oauthserver.py.
//
//   node oauthserver.js      (environment below; prints "listening PORT")
//
// Environment:
//   OAUTH_NODE_DIR     where node_modules/oidc-provider is (build/oauth-node)
//   OAUTH_PORT         port on 127.0.0.1 (0: the kernel picks)
//   OAUTH_ACCESS_TTL   access token lifetime, seconds (default 3600)
//   OAUTH_STATE_DIR    where it writes issued.jsonl (every token, code and
//                      secret it handed out, for the tests' leak checks)
//                      and events.jsonl (grants and errors, no secrets)
//   OAUTH_USERS        comma list of accounts that may log in (default alice)
//
// What it serves, on http://127.0.0.1:PORT (issuer the same):
//   clients     popbridge-test (public, native: any loopback port;
//               authorization_code + PKCE, device_code, refresh_token;
//               refresh tokens rotate, reusing an old one revokes the grant)
//               popbridge-conf (the same, confidential, client_secret_post,
//               secret "conf-secret-2b7e"); dovecot (introspection only,
//               client_secret_basic, secret "dovecot-secret-9f4a")
//   scopes      openid offline_access imap
//   features    deviceFlow, introspection, revocation; opaque access tokens
//               (resourceIndicators off); no devInteractions
//   /interaction/UID          GET: JSON {uid, prompt, client, scope}
//   /interaction/UID/login    POST login=NAME
//   /interaction/UID/confirm  POST: a Grant for everything asked
//   /interaction/UID/abort    POST: access_denied
//   /test/control             POST JSON {fail: N, status: S, body: B}: the
//                             next N token requests get S with body B
//                             (oidc-provider never sends slow_down, 5xx or
//                             garbage by itself)
//   /test/stats               GET JSON: token requests by grant type, the
//                             time (ms) of each, and the other endpoints'
//
// Stops on SIGTERM or when its stdin closes.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as querystring from 'node:querystring';

const nodeDir = process.env.OAUTH_NODE_DIR || path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../build/oauth-node');
const entry = path.join(nodeDir, 'node_modules', 'oidc-provider', 'lib', 'index.js');
const { default: Provider, errors } = await import(pathToFileURL(entry).href);

const stateDir = process.env.OAUTH_STATE_DIR || '.';
const accessTtl = parseInt(process.env.OAUTH_ACCESS_TTL || '3600', 10);
const users = new Set((process.env.OAUTH_USERS || 'alice').split(',').map((s) => s.trim()).filter(Boolean));

function record(file, obj) {
  fs.appendFileSync(path.join(stateDir, file), `${JSON.stringify(obj)}\n`);
}

const stats = {
  token: {}, times: [], device_authorization: 0, introspection: 0, revocation: 0, injected: 0,
};
let control = { fail: 0, status: 503, body: '' };

const server = http.createServer();
await new Promise((resolve) => server.listen(parseInt(process.env.OAUTH_PORT || '0', 10), '127.0.0.1', resolve));
const port = server.address().port;
const issuer = `http://127.0.0.1:${port}`;

const clients = [
  {
    client_id: 'popbridge-test',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/'],
  },
  {
    client_id: 'popbridge-conf',
    client_secret: 'conf-secret-2b7e',
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/'],
  },
  {
    client_id: 'dovecot',
    client_secret: 'dovecot-secret-9f4a',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
];
for (const c of clients) {
  if (c.client_secret) record('issued.jsonl', { kind: 'client_secret', value: c.client_secret });
}

const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

const provider = new Provider(issuer, {
  clients,
  scopes: ['openid', 'offline_access', 'imap'],
  claims: { openid: ['sub'], email: ['email'] },
  findAccount(ctx, id) {
    if (!users.has(id)) return undefined;
    return { accountId: id, claims: () => ({ sub: id, email: id }) };
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource(ctx, form, out, err) {
        ctx.body = page('device', `${err ? `<p class="error">${err.name}</p>` : ''}${form}`);
      },
      userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
        ctx.body = page('confirm', `<p>confirm <code>${userCode}</code></p>${form}`);
      },
      successSource(ctx) {
        ctx.body = page('success', '<p>device-flow-success</p>');
      },
    },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: { enabled: false },
  },
  ttl: {
    AccessToken: accessTtl,
    AuthorizationCode: 120,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    Interaction: 600,
    RefreshToken: 14 * 24 * 3600,
    Session: 3600,
  },
  rotateRefreshToken: true,
  cookies: { keys: ['popbridge-test-cookie-key'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('error', `<p class="error">${out.error}</p>`);
  },
});
provider.proxy = false;

for (const kind of ['access_token', 'refresh_token', 'device_code', 'authorization_code']) {
  provider.on(`${kind}.saved`, (t) => record('issued.jsonl', { kind, value: t.jti }));
  provider.on(`${kind}.issued`, (t) => record('issued.jsonl', { kind, value: t.jti }));
}
// PKCE verifiers reach the server only in token requests: kept for the
// leak checks too.
function verifier(ctx) {
  const v = ctx.oidc?.params?.code_verifier;
  if (v) record('issued.jsonl', { kind: 'code_verifier', value: v });
}
provider.on('grant.success', (ctx) => {
  verifier(ctx);
  record('events.jsonl', { event: 'grant.success', grant_type: ctx.oidc.params.grant_type });
});
provider.on('grant.error', (ctx, err) => {
  verifier(ctx);
  record('events.jsonl', { event: 'grant.error', grant_type: ctx.oidc?.params?.grant_type, error: err.error });
});
provider.on('grant.revoked', (ctx, grantId) => record('events.jsonl', { event: 'grant.revoked', grant: grantId.length }));
provider.on('server_error', (ctx, err) => record('events.jsonl', { event: 'server_error', message: String(err && err.message) }));

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// The tests' own routes, before oidc-provider's.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (ctx.path === '/test/control' && ctx.method === 'POST') {
    control = { fail: 0, status: 503, body: '', ...JSON.parse(await readBody(ctx.req)) };
    ctx.body = { ok: true };
    return;
  }
  if (ctx.path === '/test/stats') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST') {
    stats.times.push(Date.now());
    if (control.fail > 0) {
      control.fail -= 1;
      stats.injected += 1;
      ctx.status = control.status;
      ctx.type = typeof control.body === 'string' ? 'text/html' : 'application/json';
      ctx.body = typeof control.body === 'string' ? control.body : JSON.stringify(control.body);
      return;
    }
    await next();
    const gt = ctx.oidc?.params?.grant_type || '?';
    stats.token[gt] = (stats.token[gt] || 0) + 1;
    return;
  }
  if (ctx.path === '/device/auth') stats.device_authorization += 1;
  if (ctx.path === '/token/introspection') stats.introspection += 1;
  if (ctx.path === '/token/revocation') stats.revocation += 1;
  if (!m) {
    await next();
    return;
  }
  const uid = m[1];
  const action = m[2];
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) throw new errors.InvalidRequest('interaction mismatch');
  if (!action) {
    ctx.body = {
      uid, prompt: details.prompt.name, client: details.params.client_id, scope: details.params.scope,
    };
    return;
  }
  let result;
  if (action === 'abort') {
    result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
  } else if (action === 'login') {
    const form = querystring.parse(await readBody(ctx.req));
    if (!users.has(form.login)) {
      ctx.status = 403;
      ctx.body = { error: 'no such user' };
      return;
    }
    result = { login: { accountId: form.login } };
  } else {
    const { prompt: { details: missing }, params, session: { accountId } } = details;
    let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.respond = false;
});

server.on('request', provider.callback());
console.log(`listening ${port}`);

function stop() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
