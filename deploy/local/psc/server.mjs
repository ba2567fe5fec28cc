// A stand-in Pro Santé Connect for the local demo and the tests: the `oidc-provider` library
// (a certified OpenID Connect provider) configured as PSC answers: a Keycloak-style issuer
// path, the discovery document at PSC's path (.well-known/wallet-openid-configuration),
// scope `openid scope_all`, userinfo claims SubjectNameID / SubjectRefPro, acr `eidas1`,
// PKCE S256 required, client_secret_post. Loopback only. Demo identities come from a JSON
// file; the sign-in page lists them (no password: the e-CPS app stands in for that).
//
// Usage: node server.mjs CONFIG.json   (prints "ready <issuer>" once listening)
// CONFIG: {port, client_id, client_secret, redirect_uris: [...], identities: [{
//   subject, given_name, family_name, profession_code}]}
//
// Test hook, loopback only: POST /_standin/forge {"mode": "none"|"rogue_key"|"nonce"} makes the
// token endpoint answer with an ID token re-signed by a key the issuer never published, or
// with another nonce: what an attacker between the homeserver and PSC could try.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const REALM = '/auth/realms/esante-wallet';
const issuer = `http://127.0.0.1:${config.port}${REALM}`;
const identities = new Map(config.identities.map((who) => [who.subject, who]));

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signing = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
const rogue = (await generateKeyPair('RS256')).privateKey;
let forge = 'none';

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: config.redirect_uris,
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  jwks: { keys: [signing] },
  scopes: ['openid', 'scope_all'],
  claims: {
    openid: ['sub'],
    scope_all: ['SubjectNameID', 'given_name', 'family_name', 'SubjectRefPro', 'preferred_username'],
  },
  acrValues: ['eidas1', 'faible'],
  pkce: { required: () => true },
  routes: {
    authorization: '/protocol/openid-connect/auth',
    token: '/protocol/openid-connect/token',
    userinfo: '/protocol/openid-connect/userinfo',
    jwks: '/protocol/openid-connect/certs',
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `${REALM}/interaction/${interaction.uid}` },
  cookies: { keys: [randomUUID()] },
  findAccount: async (_ctx, id) => {
    const who = identities.get(id);
    if (!who) return undefined;
    return {
      accountId: id,
      claims: async () => ({
        sub: id,
        SubjectNameID: who.subject,
        preferred_username: who.subject,
        given_name: who.given_name,
        family_name: who.family_name,
        SubjectRefPro: {
          codeCivilite: 'DR',
          exercices: [{
            codeProfession: who.profession_code,
            codeCategorieProfessionnelle: 'C',
            nomDexercice: who.family_name,
            prenomDexercice: who.given_name,
            activities: [],
          }],
        },
      }),
    };
  },
});
provider.proxy = false;
const callback = provider.callback();

function page(uid) {
  const rows = [...identities.values()].map((who) => `
    <li><form method="post" action="${REALM}/interaction/${escape(uid)}/login">
      <input type="hidden" name="subject" value="${escape(who.subject)}">
      <button type="submit" name="acr" value="eidas1">e-CPS : ${escape(who.given_name)}
        ${escape(who.family_name)} (${escape(who.subject)})</button>
      <button type="submit" name="acr" value="faible" class="weak">niveau faible</button>
    </form></li>`).join('');
  return `<!doctype html><html lang="fr"><head><meta charset="utf-8">
    <title>Pro Santé Connect (démo)</title></head><body>
    <h1>Pro Santé Connect — démonstration / demo</h1>
    <p>Choisissez un praticien de démonstration / choose a demo practitioner:</p>
    <ul>${rows}</ul></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, path) {
  const [uid, action] = path.split('/').slice(2);
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (!action) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(uid));
    return;
  }
  const form = await readForm(req);
  const accountId = form.get('subject');
  if (!identities.has(accountId)) {
    res.writeHead(400).end('unknown identity');
    return;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope('openid scope_all');
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId, acr: form.get('acr') === 'eidas1' ? 'eidas1' : 'faible' },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

async function forged(idToken) {
  const claims = decodeJwt(idToken);
  const header = decodeProtectedHeader(idToken);
  if (forge === 'nonce') {
    return new SignJWT({ ...claims, nonce: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid: header.kid }).sign(privateKey);
  }
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'rogue' }).sign(rogue);
}

function forgingResponse(res) {
  // Buffer the token endpoint's answer, then replace its id_token.
  const chunks = [];
  const { write, end, setHeader } = res;
  res.setHeader = (name, value) => (name.toLowerCase() === 'content-length' ? res : setHeader.call(res, name, value));
  res.write = (chunk) => { chunks.push(Buffer.from(chunk)); return true; };
  res.end = (chunk, ...rest) => {
    if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
    const text = Buffer.concat(chunks).toString('utf8');
    let answer;
    try { answer = JSON.parse(text); } catch { return end.call(res, text); }
    if (!answer.id_token) return end.call(res, text);
    forged(answer.id_token).then((token) => {
      res.write = write;
      end.call(res, JSON.stringify({ ...answer, id_token: token }));
    });
    return res;
  };
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/_standin/forge' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      forge = JSON.parse(body).mode;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ forge }));
      return;
    }
    if (!url.pathname.startsWith(REALM)) {
      res.writeHead(404).end('not found');
      return;
    }
    let path = url.pathname.slice(REALM.length) || '/';
    if (path.startsWith('/interaction/')) {
      await interaction(req, res, path);
      return;
    }
    if (path === '/.well-known/wallet-openid-configuration') path = '/.well-known/openid-configuration';
    if (path === '/protocol/openid-connect/token' && forge !== 'none') forgingResponse(res);
    req.originalUrl = REALM + path + url.search;
    req.url = path + url.search;
    callback(req, res);
  } catch (error) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`stand-in error: ${error.message}`);
  }
});
server.listen(config.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
