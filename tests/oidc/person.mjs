// Plays a person at the test OpenID Provider's device pages, over plain HTTP as a browser
// would: enters the user code, confirms (or aborts), signs in, consents.
//
//   node person.mjs --url VERIFICATION_URI --code USER_CODE --login ACCOUNT [--abort]
//
// Prints the last page's text and exits 0 when the provider said the device is signed in
// (or, with --abort, that it did not sign in); exits 1 with the page otherwise.
function arg(name) {
  const at = process.argv.indexOf(`--${name}`);
  return at !== -1 ? process.argv[at + 1] : undefined;
}
const url = arg('url');
const code = arg('code');
const login = arg('login');
const abort = process.argv.includes('--abort');
if (!url || !code || !login) {
  console.error('usage: node person.mjs --url URI --code CODE --login ACCOUNT [--abort]');
  process.exit(2);
}

const jar = new Map();
function remember(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const eq = pair.indexOf('=');
    jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1));
  }
}
function cookies() {
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}

// Fetches `target`, following redirects by hand so every hop's cookies are kept.
async function visit(target, form) {
  let method = form ? 'POST' : 'GET';
  let body = form ? new URLSearchParams(form).toString() : undefined;
  for (let hops = 0; hops < 20; hops += 1) {
    const headers = { cookie: cookies() };
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(target, { method, body, headers, redirect: 'manual' });
    remember(response);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      target = new URL(location, target).toString();
      method = 'GET';
      body = undefined;
      continue;
    }
    return { url: target, status: response.status, html: await response.text() };
  }
  throw new Error('too many redirects');
}

// The page's first form: its action and hidden fields.
function formOf(page) {
  const open = page.html.match(/<form[^>]*action="([^"]*)"[^>]*>/i);
  if (!open) return undefined;
  const fields = {};
  for (const input of page.html.matchAll(/<input[^>]*>/gi)) {
    const name = input[0].match(/name="([^"]*)"/i);
    const value = input[0].match(/value="([^"]*)"/i);
    if (name && /type="hidden"/i.test(input[0])) fields[name[1]] = value ? value[1] : '';
  }
  return { action: new URL(open[1].replace(/&amp;/g, '&'), page.url).toString(), fields, html: page.html };
}

function text(page) {
  return page.html.replace(/<style[\s\S]*?<\/style>/gi, '').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
}

let page = await visit(url);
for (let step = 0; step < 10; step += 1) {
  const form = formOf(page);
  if (!form) break;
  const fields = { ...form.fields };
  if (/name="user_code"/.test(form.html) && !('confirm' in fields)) {
    fields.user_code = code;
  } else if ('confirm' in fields || /name="confirm"/.test(form.html)) {
    fields.confirm = 'yes';
    if (abort) fields.abort = 'yes';
  } else if (/name="login"/.test(form.html)) {
    fields.prompt = 'login';
    fields.login = login;
    fields.password = 'any';
  } else if (fields.prompt === 'consent' || /consent/i.test(form.html)) {
    fields.prompt = 'consent';
  } else {
    break;
  }
  page = await visit(form.action, fields);
}
const said = text(page);
console.log(said);
const ok = abort ? !/success/i.test(said) : /success|signed in|sign-in|connected/i.test(said) && !/error|incorrect/i.test(said);
process.exit(ok ? 0 : 1);
