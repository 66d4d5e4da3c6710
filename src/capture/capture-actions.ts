/**
 * Actions people take on ComfyUI besides prompts: interrupts, queue and history deletions and clears (a
 * deleted queued prompt ends its session as cancelled), uploads (name and SHA-256), memory frees.
 */
import { sha256Hex } from '../audit/json.js'
import { actionEvent, sessionCancelledEvent, type SessionPatch } from '../audit/audit-events.js'
import type { AuditEventInput, JsonObject, Submitter } from '../audit/types.js'
import { isoTime } from './json-value.js'
import { parseMultipart } from '../comfyui/multipart.js'
import {
  checkWith,
  parseWith,
  zFreeRequest,
  zInterruptRequest,
  zQueueOrHistoryAction,
  zUploadResponse,
} from '../comfyui/schemas.js'
import type { CaptureTap } from './tap.js'
import { bodyJson, type CaptureCore } from './capture-state.js'
import type { NodeRecords } from './session-fold.js'
import { submitterJson } from './prompt-exchange.js'

export function captureActions(c: CaptureCore & NodeRecords) {
  const { sessions, isKnown, retire } = c
  const cancelQueued = (
    out: AuditEventInput[],
    ids: Iterable<string>,
    timeMs: number,
    submitter: Submitter,
  ): void => {
    for (const id of ids) {
      const s = sessions.get(id)
      if (!s || s.phase !== 'queued' || s.httpStatus !== 200) continue
      const reason = `deleted from the queue by ${submitter.user}`
      const patch: SessionPatch = { status: 'cancelled', ended_at: isoTime(timeMs), status_reason: reason }
      out.push(sessionCancelledEvent(isoTime(timeMs), id, patch, submitterJson(submitter, null)))
      retire(s, 'cancelled')
    }
  }

  const handleAction = (out: AuditEventInput[], e: Parameters<CaptureTap['action']>[0]): void => {
    const base: JsonObject = {
      method: e.method,
      path: e.path,
      http_status: e.status,
      submitter: submitterJson(e.submitter, null),
    }
    const ok = e.status >= 200 && e.status < 300
    const parsedBody = e.kind === 'upload' ? null : bodyJson(e.body)
    switch (e.kind) {
      case 'interrupt': {
        const req = parsedBody === null ? null : checkWith(zInterruptRequest, parsedBody)
        const promptId = req?.ok ? (req.value.prompt_id ?? null) : null
        const running = [...sessions.values()].filter((s) => s.phase === 'running').map((s) => s.id)
        // The body's prompt_id is any string a client sends: it names a session only when it is one. (The
        // payload keeps it, redacted like every payload string; an event's session id is never redacted.)
        const known = promptId !== null && isKnown(promptId)
        out.push(
          actionEvent(
            'action.interrupt',
            isoTime(e.timeMs),
            known ? promptId : promptId === null && running.length === 1 ? (running[0] as string) : null,
            {
              ...base,
              prompt_id: promptId,
              scope: promptId === null ? 'global' : 'prompt',
              running_prompt_ids: running,
            },
          ),
        )
        return
      }
      case 'queue':
      case 'history': {
        const req = parsedBody === null ? null : checkWith(zQueueOrHistoryAction, parsedBody)
        const del = req?.ok ? (req.value.delete ?? []) : []
        const clear = req?.ok ? req.value.clear === true : false
        if (del.length > 0) {
          out.push(
            actionEvent(
              e.kind === 'queue' ? 'action.queue_delete' : 'action.history_delete',
              isoTime(e.timeMs),
              null,
              {
                ...base,
                prompt_ids: del,
              },
            ),
          )
          if (e.kind === 'queue' && ok) cancelQueued(out, del, e.timeMs, e.submitter)
        }
        if (clear) {
          out.push(
            actionEvent(
              e.kind === 'queue' ? 'action.queue_clear' : 'action.history_clear',
              isoTime(e.timeMs),
              null,
              base,
            ),
          )
          if (e.kind === 'queue' && ok) cancelQueued(out, [...sessions.keys()], e.timeMs, e.submitter)
        }
        if (del.length === 0 && !clear) {
          // A request that changes nothing is still someone's action on the queue or history.
          out.push(
            actionEvent(
              e.kind === 'queue' ? 'action.queue_delete' : 'action.history_delete',
              isoTime(e.timeMs),
              null,
              {
                ...base,
                prompt_ids: [],
                request_unparsed: req === null || !req.ok,
              },
            ),
          )
        }
        return
      }
      case 'upload': {
        const multipart = parseMultipart(e.body)
        const file = multipart.ok ? multipart.parts.find((p) => p.filename !== null) : undefined
        const field = (name: string): string | null => {
          const part = multipart.ok
            ? multipart.parts.find((p) => p.name === name && p.filename === null)
            : undefined
          return part ? part.data.toString('utf8') : null
        }
        const answer = e.responseBody ? parseWith(zUploadResponse, e.responseBody) : null
        out.push(
          actionEvent('action.upload', isoTime(e.timeMs), null, {
            ...base,
            name: answer?.ok ? answer.value.name : (file?.filename ?? null),
            subfolder: answer?.ok ? answer.value.subfolder : (field('subfolder') ?? ''),
            type: answer?.ok ? answer.value.type : (field('type') ?? 'input'),
            original_filename: file?.filename ?? null,
            field: file?.name ?? null,
            sha256: file ? sha256Hex(file.data) : null,
            bytes: file ? file.data.length : null,
            overwrite: field('overwrite'),
            ...(multipart.ok ? {} : { parse_error: multipart.reason }),
          }),
        )
        return
      }
      case 'free': {
        const req = parsedBody === null ? null : checkWith(zFreeRequest, parsedBody)
        out.push(
          actionEvent('action.free', isoTime(e.timeMs), null, {
            ...base,
            unload_models: req?.ok ? (req.value.unload_models ?? null) : null,
            free_memory: req?.ok ? (req.value.free_memory ?? null) : null,
          }),
        )
        return
      }
    }
  }

  return { handleAction }
}
