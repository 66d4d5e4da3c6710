import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEventInput } from '../../src/audit/types.js'
import { createFileHasher, type FileHasher } from '../../src/provenance/file-hasher.js'
import { createModelHasher, findEmbeddingRefs } from '../../src/provenance/model-hasher.js'
import { createOutputHasher, createProvenanceEnricher } from '../../src/provenance/provenance-enricher.js'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const PNG = fileURLToPath(new URL('../../fixtures/comfyui-0.8.0/pipeline_00001_.png', import.meta.url))
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')

const dirs: string[] = []
const hashers: FileHasher[] = []
afterEach(async () => {
  for (const h of hashers.splice(0)) await h.close()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'comfy-audit-prov-'))
  dirs.push(d)
  return d
}

/** A FileHasher that counts calls, around the real worker pool. */
function countingHasher(): { hasher: FileHasher; calls: string[] } {
  const real = createFileHasher({ workers: 2 })
  hashers.push(real)
  const calls: string[] = []
  return {
    calls,
    hasher: {
      hash: (p) => {
        calls.push(p)
        return real.hash(p)
      },
      close: () => real.close(),
    },
  }
}

describe('model hasher', () => {
  it('resolves through the folders in search order, maps paths, hashes once and notices a swapped file', async () => {
    const root = await tempDir()
    const remote = '/srv/comfy/models'
    const first = join(root, 'ckpt-a')
    const second = join(root, 'ckpt-b')
    await mkdir(join(second, 'sub'), { recursive: true })
    await mkdir(first, { recursive: true })
    await writeFile(join(second, 'sub', 'model.safetensors'), 'model bytes')
    await mkdir(join(root, 'emb'), { recursive: true })
    await writeFile(join(root, 'emb', 'easynegative.safetensors'), 'embedding')
    const { hasher, calls } = countingHasher()
    const models = createModelHasher({
      fileHasher: hasher,
      folderPaths: async () => ({
        checkpoints: [`${remote}/a`, `${remote}/b`],
        embeddings: [`${remote}/emb`],
      }),
      pathMap: [
        [`${remote}/a`, first],
        [`${remote}/b`, second],
        [`${remote}/emb`, join(root, 'emb')],
      ],
    })
    expect(await models.resolve('checkpoints', 'sub/model.safetensors')).toBe(
      join(second, 'sub', 'model.safetensors'),
    )
    expect(await models.resolve('checkpoints', '../emb/easynegative.safetensors')).toBeNull()
    // The first folder that has the file wins.
    await mkdir(join(first, 'sub'), { recursive: true })
    await writeFile(join(first, 'sub', 'model.safetensors'), 'other bytes')
    expect(await models.resolve('checkpoints', 'sub/model.safetensors')).toBe(
      join(first, 'sub', 'model.safetensors'),
    )

    const ref = {
      folder: 'checkpoints',
      name: 'sub/model.safetensors',
      node_id: '4',
      input_name: 'ckpt_name',
    }
    const refs = [
      ref,
      ...findEmbeddingRefs({
        '6': {
          class_type: 'CLIPTextEncode',
          inputs: { text: 'a cat, embedding:easynegative, (embedding:missing:1.2)' },
        },
      }),
    ]
    const [a, emb, missing] = await Promise.all([models.hashModels(refs), models.hashModels([ref])]).then(
      ([x]) => x,
    )
    expect(a).toMatchObject({
      sha256: sha('other bytes'),
      autov2: sha('other bytes').slice(0, 10),
      bytes: 11,
    })
    expect(emb).toMatchObject({
      folder: 'embeddings',
      name: 'easynegative',
      sha256: sha('embedding'),
      input_name: 'text',
    })
    expect(missing).toMatchObject({ name: 'missing', sha256: null })
    expect(calls.filter((c) => c.endsWith('model.safetensors'))).toHaveLength(1)

    // Same path, new content and mtime: hashed again.
    await writeFile(join(first, 'sub', 'model.safetensors'), 'swapped!!!!')
    await utimes(join(first, 'sub', 'model.safetensors'), new Date(), new Date(Date.now() + 5000))
    const [b] = await models.hashModels([ref])
    expect(b?.sha256).toBe(sha('swapped!!!!'))
    expect(calls.filter((c) => c.endsWith('model.safetensors'))).toHaveLength(2)
  })
})

describe('provenance enricher', () => {
  let server: Server | undefined
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()))
    server = undefined
  })

  it('hashes outputs from /view and local folders and fills the outputs table', async () => {
    const png = await readFile(PNG)
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      if (url.pathname === '/view' && url.searchParams.get('filename') === 'a.png') res.end(png)
      else res.writeHead(404).end()
    })
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
    const port = (server.address() as { port: number }).port
    const dir = await tempDir()
    await mkdir(join(dir, 'temp'), { recursive: true })
    await writeFile(join(dir, 'temp', 'b.png'), png)
    const store = createRuntimeStore(createSqliteDialect({ path: ':memory:' }), { origin: 'gw/p' })
    const { hasher } = countingHasher()
    const enricher = createProvenanceEnricher({
      emit: (events) => store.append(events),
      outputHasher: createOutputHasher({
        comfyUrl: `http://127.0.0.1:${port}`,
        localDirs: { temp: join(dir, 'temp') },
        fileHasher: hasher,
      }),
    })
    store.onCommitted((events) => enricher.onCommitted(events))
    const outputs = [
      { node_id: '9', type: 'output', subfolder: '', filename: 'a.png' },
      { node_id: '10', type: 'temp', subfolder: '', filename: 'b.png' },
    ]
    const input: AuditEventInput = {
      kind: 'node.finished',
      time: '2026-01-01T00:00:00.000Z',
      session_id: 's1',
      payload: { outputs },
    }
    await store.append([input])
    await enricher.idle()
    await store.flush()
    const rows = await store.outputsBySha256(sha(png))
    expect(rows.map((r) => [r.filename, r.bytes, r.width])).toEqual([
      ['b.png', png.length, expect.any(Number)],
      ['a.png', png.length, expect.any(Number)],
    ])
    expect(rows[0]!.width).toBeGreaterThan(0)
    await store.close()
  })
})
