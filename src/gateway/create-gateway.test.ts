import { createHash } from 'node:crypto'
import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import { namespacedClientId } from './client-ids.js'
import { createGateway, type Gateway, type GatewayOptions } from './create-gateway.js'
import { memoryPromptIds } from './prompt-ids.js'
import { createRecordingTap, type RecordingTap } from './recording-tap.js'

interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** A stand-in upstream whose behaviour each test sets; it records what reached it. */
interface Upstream {
  url: string
  port: number
  seen: Seen[]
  handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void
  /** When set, the request is handed over unread (for streaming tests). */
  rawHandler: ((req: IncomingMessage, res: ServerResponse) => void) | null
  close(): Promise<void>
}

async function startUpstream(port = 0, withWs = false): Promise<Upstream> {
  const up: Upstream = {
    url: '',
    port: 0,
    seen: [],
    handler: (_req, res) => res.end('ok'),
    rawHandler: null,
    close: async () => {},
  }
  const server = http.createServer((req, res) => {
    if (up.rawHandler) return up.rawHandler(req, res)
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      // The gateway's observer socket knocks on /ws; that is not a request under test.
      if (req.url?.startsWith('/ws')) {
        res.writeHead(404)
        res.end()
        return
      }
      up.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      up.handler(req, res, body)
    })
  })
  let wss: WebSocketServer | null = null
  if (withWs) {
    wss = new WebSocketServer({ server })
    wss.on('connection', (ws, req) => {
      const sid = new URL(req.url ?? '/', 'http://x').searchParams.get('clientId')
      ws.send(
        JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid } }),
      )
    })
  }
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  up.port = (server.address() as AddressInfo).port
  up.url = `http://127.0.0.1:${up.port}`
  up.close = async () => {
    for (const c of wss?.clients ?? []) c.terminate()
    wss?.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return up
}

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? 'GET', headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        )
      },
    )
    req.on('error', reject)
    req.end(opts.body)
  })
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function setup(
  extra: Partial<GatewayOptions> = {},
  upstream?: Upstream,
): Promise<{ up: Upstream; gw: Gateway; tap: RecordingTap }> {
  const up = upstream ?? (await startUpstream())
  if (!upstream) cleanups.push(() => up.close())
  const tap = createRecordingTap()
  const gw = await createGateway({ upstreamUrl: up.url, port: 0, tap, ...extra })
  cleanups.push(() => gw.close({ drainMillis: 100 }))
  return { up, gw, tap }
}

describe('HTTP forwarding', () => {
  it('removes hop-by-hop headers both ways and adds X-Forwarded-*', async () => {
    const { up, gw } = await setup()
    up.handler = (_req, res) => {
      res.writeHead(201, [
        'Connection',
        'x-resp-hop',
        'X-Resp-Hop',
        'secret',
        'Keep-Alive',
        'timeout=99',
        'Set-Cookie',
        'a=1',
        'Set-Cookie',
        'b=2',
        'X-Up',
        'yes',
      ])
      res.end('done')
    }
    const gwHost = new URL(gw.url).host
    const reply = await request(`${gw.url}/api/object_info?x=1`, {
      headers: {
        Connection: 'close, X-Secret-Hop',
        'X-Secret-Hop': '1',
        'Keep-Alive': 'timeout=5',
        TE: 'trailers',
        'Proxy-Authorization': 'Basic eA==',
        'X-Kept': 'yes',
        'X-Forwarded-For': '10.0.0.9',
      },
    })
    expect(reply.status).toBe(201)
    expect(reply.body.toString()).toBe('done')
    expect(reply.headers['x-resp-hop']).toBeUndefined()
    expect(reply.headers['keep-alive']).not.toBe('timeout=99')
    expect(reply.headers['set-cookie']).toEqual(['a=1', 'b=2'])
    expect(reply.headers['x-up']).toBe('yes')

    const seen = up.seen[0]!
    expect(seen.url).toBe('/api/object_info?x=1')
    expect(seen.headers['x-secret-hop']).toBeUndefined()
    expect(seen.headers['te']).toBeUndefined()
    expect(seen.headers['proxy-authorization']).toBeUndefined()
    expect(seen.headers['keep-alive']).toBeUndefined()
    expect(seen.headers['x-kept']).toBe('yes')
    expect(seen.headers.host).toBe(new URL(up.url).host)
    expect(seen.headers['x-forwarded-for']).toBe('10.0.0.9, 127.0.0.1')
    expect(seen.headers['x-forwarded-proto']).toBe('http')
    expect(seen.headers['x-forwarded-host']).toBe(gwHost)
  })

  it("rewrites an Origin naming the gateway to ComfyUI's origin and passes a foreign one on", async () => {
    const { up, gw } = await setup()
    await request(`${gw.url}/queue`, { headers: { Origin: gw.url } })
    await request(`${gw.url}/queue`, { headers: { Origin: 'http://evil.example' } })
    expect(up.seen.map((s) => s.headers.origin)).toEqual([up.url, 'http://evil.example'])
  })

  it('streams a 50 MB upload: ComfyUI receives bytes before the client has sent them all', async () => {
    const { up, gw, tap } = await setup()
    const total = 50 * 1024 * 1024
    const chunk = Buffer.alloc(1024 * 1024, 7)
    let firstByte!: () => void
    const firstByteSeen = new Promise<void>((r) => (firstByte = r))
    up.rawHandler = (req, res) => {
      const hash = createHash('sha256')
      let n = 0
      req.on('data', (c: Buffer) => {
        if (n === 0) firstByte()
        n += c.length
        hash.update(c)
      })
      req.on('end', () => res.end(JSON.stringify({ n, sha: hash.digest('hex') })))
    }
    const expected = createHash('sha256')
    const answer = new Promise<Reply>((resolve, reject) => {
      const req = http.request(`${gw.url}/upload/image`, { method: 'POST', agent: false }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        )
      })
      req.on('error', reject)
      req.write(chunk)
      expected.update(chunk)
      // The rest is sent only once ComfyUI has seen the start: a buffering gateway would hang here.
      void firstByteSeen.then(async () => {
        for (let sent = chunk.length; sent < total; sent += chunk.length) {
          expected.update(chunk)
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r))
        }
        req.end()
      })
    })
    const reply = await answer
    const digest = expected.digest('hex')
    expect(JSON.parse(reply.body.toString())).toEqual({ n: total, sha: digest })
    const action = await tap.waitFor('action')
    expect(action.kind).toBe('upload')
    expect(action.body.length).toBe(total)
    expect(createHash('sha256').update(action.body).digest('hex')).toBe(digest)
  })
})

// The same suite in two blocks, so that neither callback runs past the function-length limit.
describe('HTTP forwarding', () => {
  it('streams a download: the client receives bytes before ComfyUI has sent them all', async () => {
    const { up, gw } = await setup()
    let clientGotBytes!: () => void
    const gotBytes = new Promise<void>((r) => (clientGotBytes = r))
    up.rawHandler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/png' })
      res.write(Buffer.alloc(64 * 1024, 1))
      void gotBytes.then(() => res.end(Buffer.alloc(64 * 1024, 2)))
    }
    const size = await new Promise<number>((resolve, reject) => {
      http
        .get(`${gw.url}/view?filename=x.png`, { agent: false }, (res) => {
          let n = 0
          res.on('data', (c: Buffer) => {
            n += c.length
            clientGotBytes()
          })
          res.on('end', () => resolve(n))
        })
        .on('error', reject)
    })
    expect(size).toBe(128 * 1024)
  })

  it('still reports an action whose client went away before ComfyUI answered', async () => {
    const { up, gw, tap } = await setup()
    let upstreamReading!: () => void
    const reading = new Promise<void>((r) => (upstreamReading = r))
    up.rawHandler = (req) => {
      req.on('data', () => upstreamReading())
      req.resume()
    }
    const req = http.request(`${gw.url}/upload/image`, { method: 'POST', agent: false })
    req.on('error', () => {})
    req.write(Buffer.alloc(1024))
    await reading
    req.destroy()
    const action = await tap.waitFor('action')
    expect(action).toMatchObject({ kind: 'upload', status: 499 })
  })

  it('answers 503 while ComfyUI is down and recovers when it is back', async () => {
    const probe = await startUpstream()
    const port = probe.port
    await probe.close()
    const tap = createRecordingTap()
    const gw = await createGateway({
      upstreamUrl: `http://127.0.0.1:${port}`,
      port: 0,
      tap,
      reconnect: { initialDelayMillis: 10, maxDelayMillis: 50 },
    })
    cleanups.push(() => gw.close({ drainMillis: 100 }))
    expect(gw.upstreamHealthy).toBe(false)
    const down = await request(`${gw.url}/system_stats`)
    expect(down.status).toBe(503)
    expect(JSON.parse(down.body.toString()).error.type).toBe('upstream_unavailable')

    const healthy = new Promise<boolean>((resolve) => gw.on('upstream', (e) => resolve(e.healthy)))
    const up = await startUpstream(port, true)
    cleanups.push(() => up.close())
    up.handler = (_req, res) => res.end('{"system": {}}')
    expect(await healthy).toBe(true)
    expect(gw.upstreamHealthy).toBe(true)
    const back = await request(`${gw.url}/system_stats`)
    expect(back.status).toBe(200)
    expect(back.body.toString()).toBe('{"system": {}}')

    const lost = new Promise<boolean>((resolve) => gw.on('upstream', (e) => resolve(e.healthy)))
    await up.close()
    expect(await lost).toBe(false)
  })

  it('serves /_audit/ through the audit handler and never forwards it', async () => {
    const { up, gw } = await setup({
      auditHandler: (req, res) => {
        if (req.url !== '/_audit/health') return false
        res.end('healthy')
        return true
      },
    })
    const ok = await request(`${gw.url}/_audit/health`)
    expect(ok.body.toString()).toBe('healthy')
    expect((await request(`${gw.url}/_audit/nothing`)).status).toBe(404)
    expect((await request(`${gw.url}/_audit`)).status).toBe(404)
    expect(up.seen).toEqual([])
  })

  it('reports state-changing actions to the tap after ComfyUI answered', async () => {
    const { up, gw, tap } = await setup({
      identify: (req) => ({
        user: String(req.headers['x-user']),
        auth_method: 'token',
        client_address: null,
        user_agent: null,
        client_id: null,
      }),
    })
    up.handler = (_req, res) => res.end('{"deleted": true}')
    const body = '{"delete": ["p1"]}'
    const reply = await request(`${gw.url}/api/queue`, {
      method: 'POST',
      body,
      headers: { 'x-user': 'alice' },
    })
    expect(reply.body.toString()).toBe('{"deleted": true}')
    const action = await tap.waitFor('action')
    expect(action).toMatchObject({ kind: 'queue', method: 'POST', path: '/api/queue', status: 200 })
    expect(action.body.toString()).toBe(body)
    expect(action.responseBody?.toString()).toBe('{"deleted": true}')
    expect(action.submitter.user).toBe('alice')
    // Reads are not actions.
    await request(`${gw.url}/queue`)
    expect(tap.of('action')).toHaveLength(1)
  })
})

describe('POST /prompt', () => {
  it('injects ids, tells the tap before forwarding, and returns ComfyUI’s answer unchanged', async () => {
    const { up, gw, tap } = await setup({ newPromptId: () => 'pid-1' })
    let submittedBeforeForward = -1
    up.handler = (_req, res, body) => {
      submittedBeforeForward = tap.of('promptSubmitted').length
      const sent = JSON.parse(body.toString()) as { prompt_id: string }
      res.writeHead(200, { 'Content-Type': 'application/json' })
      res.end(`{"prompt_id": "${sent.prompt_id}", "number": 3, "node_errors": {}}`)
    }
    const body = '{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615}}}}'
    const reply = await request(`${gw.url}/api/prompt`, { method: 'POST', body })
    expect(reply.status).toBe(200)
    expect(reply.body.toString()).toBe('{"prompt_id": "pid-1", "number": 3, "node_errors": {}}')
    expect(submittedBeforeForward).toBe(1)
    const forwarded = up.seen[0]!.body.toString()
    expect(forwarded).toMatch(/^\{"client_id": "g-[0-9a-f]{12}~noclient", "prompt_id": "pid-1", "prompt": /)
    expect(forwarded).toContain('"seed": 18446744073709551615')

    const submitted = tap.of('promptSubmitted')[0]!
    expect(submitted).toMatchObject({ promptId: 'pid-1', clientId: null })
    expect(submitted.body.toString()).toBe(body)
    expect(submitted.forwardedBody.toString()).toBe(forwarded)
    const answered = await tap.waitFor('promptAnswered')
    expect(answered).toMatchObject({ promptId: 'pid-1', status: 200 })
    expect(answered.body.toString()).toBe(reply.body.toString())
  })

  it('refuses a prompt_id already recorded with a ComfyUI-shaped 400 and does not forward it', async () => {
    const { up, gw, tap } = await setup({
      promptIds: { claimPromptId: (id) => id !== 'taken', notePromptIdHeld: () => {} },
    })
    const reply = await request(`${gw.url}/prompt`, {
      method: 'POST',
      body: '{"prompt": {}, "prompt_id": "taken"}',
    })
    expect(reply.status).toBe(400)
    const answer = JSON.parse(reply.body.toString())
    expect(answer).toMatchObject({ error: { type: 'invalid_prompt', extra_info: {} }, node_errors: {} })
    expect(typeof answer.error.message).toBe('string')
    expect(typeof answer.error.details).toBe('string')
    expect(up.seen).toEqual([])
    // The id's session is someone else's: nothing about it may reach the tap as this prompt's submission.
    expect(tap.of('promptSubmitted')).toEqual([])
    expect(tap.of('promptAnswered')).toEqual([])
    expect(tap.of('promptRefused')[0]).toMatchObject({
      promptId: 'taken',
      status: 400,
      reason: 'prompt_id_taken',
    })
  })

  it('refuses a reused prompt_id without capture too: the default registry knows every id forwarded', async () => {
    const { up, gw, tap } = await setup({ newPromptId: () => 'made-by-gateway' })
    up.handler = (_req, res, body) => {
      const id = /"prompt_id": "([^"]+)"/.exec(body.toString())?.[1] ?? ''
      res.setHeader('content-type', 'application/json')
      res.end(`{"prompt_id": "${id}", "number": 1, "node_errors": {}}`)
    }
    const post = (body: string) => request(`${gw.url}/prompt`, { method: 'POST', body })
    expect((await post('{"prompt": {}, "prompt_id": "chosen"}')).status).toBe(200)
    expect((await post('{"prompt": {}}')).status).toBe(200)
    for (const id of ['chosen', 'made-by-gateway']) {
      const again = await post(`{"prompt": {}, "prompt_id": "${id}"}`)
      expect(again.status, id).toBe(400)
      expect(JSON.parse(again.body.toString()).error.type, id).toBe('invalid_prompt')
    }
    expect(up.seen.filter((s) => s.url === '/prompt')).toHaveLength(2)
    expect(tap.of('promptRefused').map((r) => [r.promptId, r.reason])).toEqual([
      ['chosen', 'prompt_id_taken'],
      ['made-by-gateway', 'prompt_id_taken'],
    ])
  })

  it("tells the registry of prompts found in ComfyUI's queue under its client ids, so none is reused", async () => {
    const up = await startUpstream(0, true)
    cleanups.push(() => up.close())
    const ours = namespacedClientId('local', 'tab-1')
    up.handler = (req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url !== '/queue') {
        res.end('{}')
        return
      }
      // Left by an earlier gateway process: one under the gateway's own namespace, one a direct client's.
      res.end(
        JSON.stringify({
          queue_running: [[0, 'left-over', {}, { client_id: ours }, []]],
          queue_pending: [[1, 'direct', {}, { client_id: 'someone-else' }, []]],
        }),
      )
    }
    const registry = memoryPromptIds()
    const held: string[] = []
    let learned!: () => void
    const learnedOne = new Promise<void>((resolve) => (learned = resolve))
    const { gw, tap } = await setup(
      {
        promptIds: {
          claimPromptId: (id) => registry.claimPromptId(id),
          notePromptIdHeld: (id) => {
            held.push(id)
            registry.notePromptIdHeld(id)
            learned()
          },
        },
      },
      up,
    )
    await learnedOne
    expect(held).toEqual(['left-over'])
    const reply = await request(`${gw.url}/prompt`, {
      method: 'POST',
      body: '{"prompt": {}, "prompt_id": "left-over"}',
    })
    expect(reply.status).toBe(400)
    expect(up.seen.filter((s) => s.url === '/prompt')).toEqual([])
    expect(tap.of('promptRefused')[0]).toMatchObject({ promptId: 'left-over', reason: 'prompt_id_taken' })
  })

  it.each([
    ['garbage', 'garbage{'],
    ['a UTF-8 BOM', '\ufeff{"prompt": {}}'],
    ['duplicate keys', '{"prompt": {}, "prompt_id": "a", "prompt_id": "b"}'],
    ['nesting 513 deep', '{"prompt": {}, "x": ' + '['.repeat(513) + ']'.repeat(513) + '}'],
    ['a lone surrogate', '{"prompt": {}, "x": "\\ud800"}'],
  ])(
    'refuses a prompt body with %s (issue 9 class 2: body parser differentials), forwarding nothing',
    async (_what, body) => {
      const { up, gw, tap } = await setup()
      const reply = await request(`${gw.url}/prompt`, { method: 'POST', body })
      expect(reply.status).toBe(400)
      expect(JSON.parse(reply.body.toString()).error.type).toBe('invalid_json')
      expect(up.seen).toHaveLength(0)
      expect(tap.of('promptSubmitted')[0]!.body.length).toBe(0)
      expect(await tap.waitFor('promptAnswered')).toMatchObject({ status: 400, refusedBy: 'gateway' })
    },
  )

  it('answers 503 to a prompt while ComfyUI is down and reports the failure', async () => {
    const probe = await startUpstream()
    await probe.close()
    const tap = createRecordingTap()
    const gw = await createGateway({ upstreamUrl: probe.url, port: 0, tap })
    cleanups.push(() => gw.close({ drainMillis: 100 }))
    const reply = await request(`${gw.url}/prompt`, { method: 'POST', body: '{"prompt": {}}' })
    expect(reply.status).toBe(503)
    const answered = await tap.waitFor('promptAnswered')
    expect(answered.status).toBe(503)
    expect(answered.error).toBeTruthy()
  })
})
