/**
 * The gateway's login page: one self-contained HTML form (no scripts, no external resources) where a person
 * pastes their API token once and gets a session cookie, so the ComfyUI front end works unchanged.
 */

/** Headers for every page the gateway serves itself: nothing may frame, sniff, leak referrers or run scripts. */
export const PAGE_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not no-referrer: under it a browser sends `Origin: null` with the page's own form POST (Fetch,
  // "serializing a request origin"), and the login would be refused as cross-site. same-origin still keeps
  // the referrer from every other site.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** A redirect target that stays on this gateway: a path starting with one `/`; anything else becomes `/`. */
export function safeNextPath(next: string | null | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/'
  if (/[\r\n\t\0]/.test(next)) return '/'
  return next
}

/** The login form, with an optional error line and where to go after a successful login. */
export function loginPageHtml(opts: { error?: string; next?: string; user?: string } = {}): string {
  const error = opts.error ? `<p class="error" role="alert">${escapeHtml(opts.error)}</p>` : ''
  const signedIn = opts.user
    ? `<p>Signed in as <b>${escapeHtml(opts.user)}</b>.</p>
<form method="post" action="/_audit/logout"><button type="submit">Sign out</button></form>`
    : ''
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · comfy-audit</title>
<style>
body{font:16px system-ui,sans-serif;background:#1b1b1f;color:#eee;display:grid;place-items:center;min-height:100vh;margin:0}
main{background:#26262b;padding:2rem;border-radius:8px;width:min(26rem,90vw)}
input{width:100%;box-sizing:border-box;padding:.5rem;margin:.5rem 0 1rem;background:#111;color:#eee;border:1px solid #555;border-radius:4px}
button{padding:.5rem 1.2rem;border-radius:4px;border:0;background:#4a7dff;color:#fff;cursor:pointer}
.error{color:#ff8080}
</style></head>
<body><main>
<h1>comfy-audit</h1>
${signedIn}${error}
<form method="post" action="/_audit/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${escapeHtml(safeNextPath(opts.next))}">
<button type="submit">Sign in</button>
</form>
<p><small>Ask an admin for a token: <code>comfy-audit users add NAME --role artist</code>.</small></p>
</main></body></html>
`
}
