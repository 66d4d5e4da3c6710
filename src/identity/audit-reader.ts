/**
 * Who the guard admitted to an audit route. The audit API records every read with its reader, and the guard
 * is the only place that knows the person: the request object carries it from one to the other.
 */
import type { IncomingMessage } from 'node:http'
import type { Submitter } from '../audit/types.js'

const admittedAs = new WeakMap<IncomingMessage, Submitter>()

/** Called by the guard when it admits `req` to a `/_audit/` route. */
export function rememberAuditReader(req: IncomingMessage, reader: Submitter): void {
  admittedAs.set(req, reader)
}

/** The person the guard admitted `req` as, for `/_audit/` routes; undefined when no guard ran. */
export function auditReader(req: IncomingMessage): Submitter | undefined {
  return admittedAs.get(req)
}
