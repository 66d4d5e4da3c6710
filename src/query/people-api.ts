/**
 * `/_audit/api/people`: the dashboard's People page, the changes of `comfy-audit users` (add, disable,
 * enable, new token) and a role change, for admins only (the access policy). Changes go through the identity directory, so the
 * gateway's person-change journal records them like the CLI's, naming the admin who made them. Tokens are in
 * the answer that creates them and nowhere else.
 */
import { asJsonValue } from '../audit/json-value.js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { sendJson } from '../comfyui/send-json.js'
import { stringifyJson } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'
import { ROLES, type Role } from '../config/security-config.js'
import { BodyTooLarge, readBody } from '../gateway/http-util.js'
import type { IdentityDirectory } from '../identity/identity-directory.js'

/** Options of {@link createPeopleApi}. */
interface PeopleApiOptions {
  readonly directory: Pick<
    IdentityDirectory,
    'listPeople' | 'addPerson' | 'disablePerson' | 'enablePerson' | 'reissueToken' | 'setRole'
  >
  /** Who is making a change, as the journal names them (`admin:ada`). */
  readonly actor: (req: IncomingMessage) => string
}

function send(res: ServerResponse, status: number, body: JsonValue): void {
  sendJson(res, status, stringifyJson(body, { strict: true }))
}

/** A handler for `/_audit/api/people` and below; false for other paths. */
export function createPeopleApi(
  options: PeopleApiOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const { directory } = options
  return async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://gateway').pathname
    if (path === '/_audit/api/people') {
      if (req.method === 'GET' || req.method === 'HEAD') {
        send(res, 200, { people: asJsonValue(await directory.listPeople()) })
        return true
      }
      if (req.method !== 'POST') {
        send(res, 405, { error: `method ${req.method} not allowed on ${path}` })
        return true
      }
      let body: unknown
      try {
        body = JSON.parse((await readBody(req, 64 * 1024)).toString('utf8'))
      } catch (error) {
        if (error instanceof BodyTooLarge) send(res, 413, { error: 'body larger than 64 KiB' })
        else send(res, 400, { error: 'body: expected JSON {"name": ..., "role": ...}' })
        return true
      }
      const { name, role } = (typeof body === 'object' && body !== null ? body : {}) as Record<
        string,
        unknown
      >
      if (typeof name !== 'string') {
        send(res, 400, { error: 'name: expected a string' })
        return true
      }
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
        send(res, 400, { error: `role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}` })
        return true
      }
      const added = await directory.addPerson(name, role as Role, options.actor(req))
      if (!added.ok) send(res, 400, { error: added.reason })
      else send(res, 201, { person: asJsonValue(added.value.person), token: added.value.token })
      return true
    }
    const action = /^\/_audit\/api\/people\/([^/]+)\/(disable|enable|token|role)$/.exec(path)
    if (!action) return false
    if (req.method !== 'POST') {
      send(res, 405, { error: `method ${req.method} not allowed on ${path}` })
      return true
    }
    const name = decodeURIComponent(action[1]!)
    const by = options.actor(req)
    if (action[2] === 'role') {
      let role: unknown
      try {
        role = (JSON.parse((await readBody(req, 64 * 1024)).toString('utf8')) as { role?: unknown }).role
      } catch {
        role = undefined
      }
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
        send(res, 400, { error: `role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}` })
        return true
      }
      const r = await directory.setRole(name, role as Role, by)
      if (!r.ok) send(res, 404, { error: r.reason })
      else send(res, 200, { person: asJsonValue(r.value) })
      return true
    }
    if (action[2] === 'token') {
      const r = await directory.reissueToken(name, by)
      if (!r.ok) send(res, 404, { error: r.reason })
      else send(res, 200, { person: asJsonValue(r.value.person), token: r.value.token })
      return true
    }
    const r =
      action[2] === 'disable'
        ? await directory.disablePerson(name, by)
        : await directory.enablePerson(name, by)
    if (!r.ok) send(res, 404, { error: r.reason })
    else send(res, 200, { person: asJsonValue(r.value) })
    return true
  }
}
