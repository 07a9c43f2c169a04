// A real OpenID Provider (the certified `oidc-provider` package) for jitssh's SSO tests, with a
// throwaway configuration: device flow on, one public client, development login pages.
//
//   node provider.mjs --port PORT --accounts FILE [--client-id ID] [--redirect-uri URI]
//
// With --redirect-uri, a second public client `jitssh-web` signs in by the authorization code
// flow (PKCE required) and is sent back to URI: the bastion's web console.
//
// The issuer is http://127.0.0.1:PORT. FILE is JSON the test writes and may rewrite at any
// time (it is re-read on every lookup, so a test can remove a person from a group):
//   { "alice": { "email": "...", "preferred_username": "...", "groups": ["ops"] } }
// The key is both what the person types at the login page and their `sub`.
// The development login page takes any password; a login not in FILE gets no account.
import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

function arg(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at !== -1 && at + 1 < process.argv.length) return process.argv[at + 1];
  return fallback;
}

const port = Number(arg('port', process.env.OIDC_PORT || '0'));
const accountsFile = arg('accounts', process.env.OIDC_ACCOUNTS);
const clientId = arg('client-id', 'jitssh');
const redirectUri = arg('redirect-uri', undefined);
if (!port || !accountsFile) {
  console.error('usage: node provider.mjs --port PORT --accounts FILE [--client-id ID]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

function accounts() {
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

// A fresh signing key per run: nothing of this provider outlives the test.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-es256', alg: 'ES256', use: 'sig' };
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const rsaJwk = { ...rsa.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
      response_types: [],
      redirect_uris: [],
    },
    ...(redirectUri
      ? [
          {
            client_id: 'jitssh-web',
            token_endpoint_auth_method: 'none',
            grant_types: ['authorization_code'],
            response_types: ['code'],
            redirect_uris: [redirectUri],
          },
        ]
      : []),
  ],
  pkce: { required: () => true },
  jwks: { keys: [rsaJwk, jwk] },
  features: {
    deviceFlow: { enabled: true },
    devInteractions: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username'],
    groups: ['groups'],
  },
  // The device flow always issues an access token; without this, email and groups would only
  // be at userinfo, not in the ID token the CA verifies.
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    const person = accounts()[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        const now = accounts()[id] || {};
        return {
          sub: id,
          email: now.email,
          email_verified: true,
          preferred_username: now.preferred_username,
          groups: now.groups || [],
        };
      },
    };
  },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${issuer}`);
});
