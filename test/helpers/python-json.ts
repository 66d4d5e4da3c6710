/**
 * Python's own `json.loads`, as ComfyUI reads a body (aiohttp's `request.json()`: the bytes decoded as strict
 * UTF-8, then `json.loads`), in one long-lived `python3` child: the differential tests compare the gateway's
 * reading with the real thing rather than with a second JavaScript parser. The value comes back through
 * `json.dumps` (NaN, big integers and lone surrogates survive the trip) and is read with the lossless parser.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { parseJson } from '../../src/audit/json.js'
import type { JsonValue } from '../../src/audit/types.js'

const SCRIPT = `
import base64, json, sys
for line in sys.stdin:
    body = base64.b64decode(line.strip())
    try:
        value = json.loads(body.decode("utf-8"))
    except Exception as e:  # JSONDecodeError, UnicodeDecodeError, RecursionError
        sys.stdout.write(json.dumps({"ok": False, "error": type(e).__name__}) + "\\n")
    else:
        sys.stdout.write(json.dumps({"ok": True, "value": value}) + "\\n")
    sys.stdout.flush()
`

/** What Python made of a body: its value, `'error'` when json.loads raises, undefined for no body. */
export type PythonReading = JsonValue | 'error' | undefined

export interface PythonJson {
  loads(body: Buffer): Promise<PythonReading>
  close(): Promise<void>
}

/** Starts `python3` (Debian's /usr/bin/python3 on CI); refuses clearly when there is none. */
export async function startPythonJson(python = process.env.PYTHON ?? 'python3'): Promise<PythonJson> {
  const child: ChildProcessWithoutNullStreams = spawn(python, ['-c', SCRIPT], { stdio: 'pipe' })
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', (e) =>
      reject(new Error(`cannot start ${python} for the JSON differential: ${e.message}`)),
    )
  })
  const waiting: ((line: string) => void)[] = []
  const lines = createInterface({ input: child.stdout })
  lines.on('line', (line) => waiting.shift()?.(line))
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  child.once('exit', (code) => {
    for (const w of waiting.splice(0))
      w(JSON.stringify({ ok: false, error: `python exited ${code}: ${stderr}` }))
  })
  return {
    loads(body) {
      if (body.length === 0) return Promise.resolve(undefined)
      return new Promise((resolve, reject) => {
        waiting.push((line) => {
          const r = parseJson(Buffer.from(line, 'utf8'), { maxDepth: 1100 })
          if (!r.ok) return reject(new Error(`unreadable answer from python: ${r.reason}`))
          const answer = r.value as { ok: boolean; value?: JsonValue; error?: string }
          if (!answer.ok && String(answer.error).startsWith('python exited'))
            return reject(new Error(String(answer.error)))
          resolve(answer.ok ? (answer.value ?? null) : 'error')
        })
        child.stdin.write(body.toString('base64') + '\n')
      })
    },
    async close() {
      child.stdin.end()
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r))
    },
  }
}
