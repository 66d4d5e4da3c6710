import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseJson, sha256Hex } from '../../src/audit/json.js'
import type { AuditEventInput, JsonObject } from '../../src/audit/types.js'
import { runTrace } from '../../src/cli/commands/trace-command.js'
import { readPngMetadata } from '../../src/provenance/png-metadata.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const PNG = readFileSync(
  fileURLToPath(new URL('../../fixtures/comfyui-0.8.0/pipeline_00001_.png', import.meta.url)),
)
const meta = readPngMetadata(PNG)
if (!meta.ok) throw new Error(meta.reason)
const promptParsed = parseJson(meta.value.text.prompt ?? '')
if (!promptParsed.ok) throw new Error(promptParsed.reason)
const prompt = promptParsed.value as JsonObject

let dir = ''
let config = ''
const ORIGIN = 'comfy-audit/trace'

function run(
  sessionId: string,
  user: string,
  t: string,
  status: 'success' | 'cached',
  withPrompt: JsonObject,
): AuditEventInput[] {
  const file = { node_id: '9', type: 'output', subfolder: '', filename: 'pipeline_00001_.png' }
  return [
    {
      kind: 'prompt.submitted',
      time: t,
      session_id: sessionId,
      payload: {
        session: {
          status: 'success',
          queued_at: t,
          prompt: withPrompt,
          prompt_sha256: sha256Hex(JSON.stringify(withPrompt)),
          submitter: { user, auth_method: 'token', client_address: null, user_agent: null, client_id: null },
          models: [
            {
              folder: 'checkpoints',
              name: 'm.safetensors',
              node_id: '4',
              input_name: 'ckpt_name',
              sha256: 'ee'.repeat(32),
            },
          ],
        },
      },
    },
    {
      kind: 'node.finished',
      time: t,
      session_id: sessionId,
      payload: {
        node_run: {
          session_id: sessionId,
          node_id: '9',
          node_type: 'SaveImage',
          timestamp_start: t,
          timestamp_end: t,
          duration_ms: 1,
          inputs: {},
          outputs: { images: [file] },
          status,
          error_message: null,
          exception_type: null,
          traceback: null,
          gpu_memory_used: null,
          gpu_memory_torch: null,
          display_node: '9',
          real_node_id: '9',
          parent_node_id: null,
          progress: null,
        },
        outputs: [file],
      },
    },
    {
      kind: 'output.hashed',
      time: t,
      session_id: sessionId,
      payload: { outputs: [{ ...file, sha256: sha256Hex(PNG), bytes: PNG.length, width: 8, height: 8 }] },
    },
  ]
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-audit-trace-'))
  config = join(dir, 'config.json')
  await writeFile(config, JSON.stringify({ origin: ORIGIN }))
  const store = createRuntimeStore(createSqliteDialect({ path: join(dir, 'audit.sqlite') }), {
    origin: ORIGIN,
  })
  // A later run that reused the image from cache comes first in the log on purpose: order must not matter.
  await store.append(run('later', 'bob', '2026-01-02T00:00:00.000Z', 'cached', prompt))
  const marked: JsonObject = {}
  for (const [id, node] of Object.entries(prompt)) marked[id] = { ...(node as JsonObject), is_changed: ['x'] }
  await store.append(run('first', 'alice', '2026-01-01T00:00:00.000Z', 'success', marked))
  await store.close()
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('trace', () => {
  it('finds the run whose node actually produced the image, listing cache reuses', async () => {
    const file = join(dir, 'image.png')
    await writeFile(file, PNG)
    const r = await runTrace(file, { data: dir, config, json: true })
    expect(r.exitCode).toBe(0)
    const out = JSON.parse(r.output)
    expect(out).toMatchObject({
      session_id: 'first',
      match: 'sha256',
      user: 'alice',
      producing_node: { node_id: '9', node_type: 'SaveImage' },
      reused_by: [{ session_id: 'later' }],
    })
    // The recorded pipeline has no text encoder: no prompt texts.
    expect(out.prompts).toEqual([])
    expect(out.models).toEqual([expect.objectContaining({ sha256: 'ee'.repeat(32) })])
    const text = await runTrace(file, { data: dir, config })
    expect(text.output).toMatch(/session: +first/)
    expect(text.output).toMatch(/person: +alice/)
  })

  it('falls back to the PNG prompt chunk for a re-encoded copy, ignoring is_changed', async () => {
    // Re-encoded: same prompt chunk, different bytes (an extra chunk after the signature and IHDR).
    const extra = Buffer.concat([
      Buffer.from([0, 0, 0, 3]),
      Buffer.from('tEXtx\0y', 'latin1'),
      Buffer.alloc(4),
    ])
    const copy = Buffer.concat([PNG.subarray(0, 33), extra, PNG.subarray(33)])
    const file = join(dir, 'copy.png')
    await writeFile(file, copy)
    const r = await runTrace(file, { data: dir, config, json: true })
    expect(r.exitCode).toBe(0)
    expect(JSON.parse(r.output)).toMatchObject({ session_id: 'first', match: 'prompt' })
  })

  it('says not found for an unknown image', async () => {
    const file = join(dir, 'other.bin')
    await writeFile(file, 'nope')
    expect((await runTrace(file, { data: dir, config })).exitCode).toBe(1)
  })
})
