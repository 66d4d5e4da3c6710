/**
 * Issue 9, classes 4 and 5: no secret in the log, and no denial of service from one request. The composition
 * root with authentication on (people in a real SQLite store) in front of the ComfyUI stand-in. Attacks that
 * depend on bytes on the wire (a stray `Upgrade:` header, headers sent byte by byte) are written as raw HTTP
 * over TCP.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/types.js'
import { loadConfig, type Config } from '../../src/config/config.js'
import { startAuditGateway, type AuditGateway } from '../../src/create-gateway.js'
import { createIdentityDirectory } from '../../src/identity/identity-directory.js'
import { createSimServer } from '../../src/sim/index.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

interface Started {
  audit: AuditGateway
  data: string
  host: string
  port: number
  tokens: { alice: string; admin: string }
  logged: string[]
}

async function start(limits: Partial<Config['limits']> = {}): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-log-dos-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const sim = await createSimServer({ dataDir: join(dir, 'comfy'), port: 0, speed: 20 })
  cleanups.push(() => sim.close())
  const data = join(dir, 'data')
  const loaded = loadConfig({
    env: {},
    flags: { data, 'comfyui.url': sim.url, listen: '127.0.0.1:0', 'auth.mode': 'token' },
  })
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'))
  const config: Config = { ...loaded.value, limits: { ...loaded.value.limits, ...limits } }
  const admin = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
    origin: 'cli',
  })
  const people = createIdentityDirectory(admin, { scrypt: { N: 1 << 10, r: 8, p: 1 } })
  const alice = await people.addPerson('alice', 'artist', 'local:test')
  const root = await people.addPerson('root', 'admin', 'local:test')
  await admin.close()
  if (!alice.ok || !root.ok) throw new Error('adding people failed')
  const logged: string[] = []
  const line =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logged.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`)
    }
  const audit = await startAuditGateway(config, {
    sweepIntervalMillis: 0,
    logger: { info: line('info'), warn: line('warn'), error: line('error') },
  })
  cleanups.push(() => audit.close())
  const url = new URL(audit.url)
  return {
    audit,
    data,
    host: url.hostname,
    port: Number(url.port),
    tokens: { alice: alice.value.token, admin: root.value.token },
    logged,
  }
}

/** Sends `text` over a fresh TCP connection; resolves with everything the gateway sent until it closed. */
function rawExchange(s: Started, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(s.port, s.host, () => socket.write(text))
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no end of the answer to ${JSON.stringify(text.split('\r\n')[0])} in 30 s`))
    }, 30_000)
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      // A 101 keeps the socket open: the status line is the answer.
      if (Buffer.concat(chunks).toString('latin1').startsWith('HTTP/1.1 101')) socket.destroy()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('latin1'))
    })
  })
}

function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
}

/** Every byte under `dir` (store, WAL, spool, key files) plus the log lines, for a grep. */
async function everything(s: Started): Promise<Buffer> {
  const parts: Buffer[] = [Buffer.from(s.logged.join('\n'))]
  for (const f of await readdir(s.data, { recursive: true })) {
    parts.push(await readFile(join(s.data, f)).catch(() => Buffer.alloc(0)))
  }
  return Buffer.concat(parts)
}

describe('issue 9 class 4: secrets in the log', () => {
  it('a stray Upgrade header does not make ?token= work on a plain request (raw TCP)', async () => {
    const s = await start()
    const host = `Host: ${s.host}:${s.port}\r\n`
    const target = `/_audit/api/sessions?token=${s.tokens.alice}`
    for (const headers of [
      'Upgrade: foo\r\n',
      'Upgrade: websocket\r\n',
      'Upgrade: websocket\r\nConnection: keep-alive\r\n',
    ]) {
      const answer = await rawExchange(
        s,
        `GET ${target} HTTP/1.1\r\n${host}${headers}Connection: close\r\n\r\n`,
      )
      expect([headers, statusOf(answer)]).toEqual([headers, 401])
    }
    // An upgrade that is no WebSocket handshake: refused too, not authenticated by its URL.
    const odd = await rawExchange(
      s,
      `GET /_audit/whoami?token=${s.tokens.alice} HTTP/1.1\r\n${host}Upgrade: h2c\r\nConnection: upgrade\r\n\r\n`,
    )
    expect(statusOf(odd)).not.toBe(200)
    expect(odd).not.toContain('alice')
    // A real WebSocket handshake still may carry its token in the URL (browsers cannot set headers).
    const ws = await rawExchange(
      s,
      `GET /ws?clientId=c1&token=${s.tokens.alice} HTTP/1.1\r\n${host}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    )
    expect(statusOf(ws)).toBe(101)
  })

  it('credentials in an audit-API URL are never stored or logged', async () => {
    const s = await start()
    const planted = 'planted-api-key-0123456789'
    const res = await fetch(
      `${s.audit.url}/_audit/api/sessions?limit=5&token=${s.tokens.alice}&api_key=${planted}`,
      { headers: { authorization: `Bearer ${s.tokens.alice}` } },
    )
    expect(res.status).toBe(200)
    // A browser sent to the login page does not carry the token on into its `next`.
    const page = await fetch(`${s.audit.url}/history?token=${s.tokens.admin}&max_items=1`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    })
    expect(page.status).toBe(303)
    expect(page.headers.get('location')).toBe(
      `/_audit/login?next=${encodeURIComponent('/history?max_items=1')}`,
    )
    // Unauthenticated with the token in the URL only: refused, and the refusal logged without it.
    const refused = await fetch(`${s.audit.url}/_audit/api/sessions?token=${s.tokens.admin}`)
    expect(refused.status).toBe(401)
    await s.audit.store.flush()
    const reads: AuditEvent[] = []
    for await (const e of s.audit.store.events({ kinds: ['audit.read'] })) reads.push(e)
    expect(reads.map((e) => e.payload.path)).toEqual([
      '/_audit/api/sessions?limit=5&token=[REDACTED]&api_key=[REDACTED]&user=alice',
    ])
    const bytes = await everything(s)
    for (const secret of [s.tokens.alice, s.tokens.admin, planted]) expect(bytes.includes(secret)).toBe(false)
  })
})

/** Writes `head` then one byte of `drip` every `everyMs` until the gateway closes the connection. */
function slowloris(
  s: Started,
  head: string,
  drip: string,
  everyMs: number,
): Promise<{ answer: string; sent: number; closedBeforeDone: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(s.port, s.host)
    let sent = 0
    let timer: NodeJS.Timeout | undefined
    const chunks: Buffer[] = []
    const deadline = setTimeout(() => {
      clearInterval(timer)
      socket.destroy()
      reject(new Error(`the gateway still held the connection after 30 s (${sent} header bytes dripped)`))
    }, 30_000)
    socket.on('connect', () => {
      socket.write(head)
      timer = setInterval(() => {
        if (sent < drip.length && socket.writable) socket.write(drip[sent++]!)
      }, everyMs)
    })
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      clearTimeout(deadline)
      resolve({
        answer: Buffer.concat(chunks).toString('latin1'),
        sent,
        closedBeforeDone: sent < drip.length,
      })
    })
  })
}

describe('issue 9 class 5: denial of service from one request', () => {
  it('closes a slowloris connection sending headers byte by byte after the header timeout (raw TCP)', async () => {
    const s = await start({ headersTimeoutMillis: 1000 })
    const head = `GET /system_stats HTTP/1.1\r\nHost: ${s.host}:${s.port}\r\n`
    // 3000 bytes at one per 20 ms would hold the connection a minute; the timeout is one second.
    const r = await slowloris(s, head, `X-Pad: ${'a'.repeat(3000)}\r\n\r\n`, 20)
    expect(r.closedBeforeDone).toBe(true)
    expect(statusOf(r.answer)).toBe(408)
    console.log(`slowloris: closed with 408 after ${r.sent} header bytes dripped (headersTimeoutMillis 1000)`)
  })

  it('closes a connection that sends nothing after the unauthenticated idle timeout', async () => {
    const s = await start({ unauthenticatedIdleMillis: 500, headersTimeoutMillis: 20_000 })
    const answer = await rawExchange(s, '')
    expect(answer).toBe('')
  })

  it('answers another client while a 10 MB prompt of adversarial strings is redacted', async () => {
    const s = await start()
    const secret = 'sk-proj-ADVERSARIALPROMPTSECRET0123456789'
    const unit = 'a.b_c'.repeat(1000) + 'eyJ-'.repeat(250) + 'a://'.repeat(250) + ' '.repeat(1000) + '\'"a":'
    const text = `${secret} ${unit.repeat(Math.ceil((10 << 20) / unit.length))}`
    const body = JSON.stringify({
      prompt: {
        '1': { class_type: 'CLIPTextEncode', inputs: { text, clip: ['2', 1] } },
        '2': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd15.safetensors' } },
      },
      extra_data: { note: text.slice(0, 1 << 20) },
    })
    expect(body.length).toBeGreaterThan(10 << 20)
    const order: string[] = []
    const t0 = performance.now()
    const times: Record<string, number> = {}
    // The big one is finished when its record is committed: parsing and redacting it come before that.
    const recorded = new Promise<void>((resolve) => {
      const off = s.audit.store.onCommitted((events) => {
        if (!events.some((e) => e.kind === 'prompt.submitted')) return
        order.push('big prompt recorded')
        times.recorded = performance.now() - t0
        off()
        resolve()
      })
    })
    let other: Promise<void> = Promise.resolve()
    const answered = new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${s.audit.url}/prompt`,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${s.tokens.alice}`, 'content-type': 'application/json' },
        },
        (res) => {
          res.resume()
          res.on('end', () => {
            times.answered = performance.now() - t0
            resolve(res.statusCode ?? 0)
          })
        },
      )
      req.on('error', reject)
      // Once the whole body is on its way, another client asks for something small.
      req.end(body, () => {
        other = fetch(`${s.audit.url}/system_stats`, {
          headers: { authorization: `Bearer ${s.tokens.admin}` },
        }).then(async (r) => {
          await r.arrayBuffer()
          order.push(`other client ${r.status}`)
          times.other = performance.now() - t0
        })
      })
    })
    const status = await answered
    await recorded
    await other
    console.log(
      `10 MB adversarial prompt: other client answered at ${times.other?.toFixed(0)} ms; the prompt answered ` +
        `(HTTP ${status}) at ${times.answered?.toFixed(0)} ms and recorded at ${times.recorded?.toFixed(0)} ms`,
    )
    expect(order).toEqual(['other client 200', 'big prompt recorded'])
    // Recorded redacted (or replaced whole past the time budget), never with the secret.
    await s.audit.store.flush()
    expect((await everything(s)).includes(secret)).toBe(false)
  }, 180_000)
})
