/** Removes every credential from an admitted request before it goes anywhere near ComfyUI or a log. */
import type { IncomingMessage } from 'node:http'
import type { AuthConfig } from '../config/security-config.js'
import { stripCredentialHeaders, withoutTokenParam } from './credentials.js'

/** What {@link scrubRequest} needs to know about the deployment. */
interface ScrubOptions {
  readonly auth: Pick<AuthConfig, 'mode' | 'cookieName' | 'trustedHeader'>
  /** ComfyUI runs with `--multi-user`: `comfy-user` is set to the person. */
  readonly multiUser?: boolean
}

/**
 * Strips credentials from both header views Node keeps (`rawHeaders`, which the proxy forwards, and
 * `headers`, which taps and logs read) and the `?token=` parameter from the URL. `user` is the admitted
 * person, or null when nobody was identified.
 */
export function scrubRequest(req: IncomingMessage, user: string | null, options: ScrubOptions): void {
  const { auth } = options
  const comfyUser = options.multiUser && user !== null ? user : null
  req.rawHeaders = stripCredentialHeaders(req.rawHeaders, {
    cookieName: auth.cookieName,
    ...(auth.mode === 'trusted-header' ? { identityHeader: auth.trustedHeader } : {}),
    comfyUser,
  })
  const h = req.headers
  delete h.authorization
  delete h['proxy-authorization']
  delete h['comfy-user']
  if (auth.mode === 'trusted-header') delete h[auth.trustedHeader.toLowerCase()]
  if (typeof h.cookie === 'string') {
    const kept = stripCredentialHeaders(['Cookie', h.cookie], { cookieName: auth.cookieName })
    if (kept.length) h.cookie = kept[1]!
    else delete h.cookie
  }
  if (comfyUser !== null) h['comfy-user'] = comfyUser
  req.url = withoutTokenParam(req.url ?? '/')
}
