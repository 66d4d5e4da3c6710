import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FIXTURE_DIR } from './catalogue.js'
import { PyFloat, dumpPyJson, isPyObject, parsePyJson } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'
import { RecordingClient, imagePipeline, request, startSim } from './sim-test-kit.js'

/** The recorded POST /prompt exchanges of the validation_errors scenario. */
function recordedValidationExchanges(): PyObject[] {
  const rows: PyObject[] = []
  for (const line of readFileSync(join(FIXTURE_DIR, 'trace.jsonl'), 'utf8').split('\n')) {
    if (!line) continue
    const r = parsePyJson(line)
    if (!r.ok || !isPyObject(r.value)) throw new Error('bad trace line')
    const row = r.value
    if (row.scenario === 'validation_errors' && row.kind === 'http' && row.path === '/prompt') rows.push(row)
  }
  return rows
}

describe('POST /prompt validation', () => {
  let sim: Awaited<ReturnType<typeof startSim>>
  let client: RecordingClient
  beforeAll(async () => {
    sim = await startSim()
    client = new RecordingClient(sim.url, 'client-a-c1a13554')
    await client.opened
  })
  afterAll(async () => {
    await client.close()
    await sim.dispose()
  })

  it('answers the recorded validation cases with the recorded status, content type and body', async () => {
    const rows = recordedValidationExchanges()
    expect(rows).toHaveLength(5)
    for (const row of rows) {
      const reply = await request(sim.url, 'POST', '/prompt', dumpPyJson(row.request))
      expect(reply.status).toBe(row.status)
      expect(reply.contentType).toBe(row.content_type)
      if (row.response_text !== undefined) {
        expect(reply.text).toBe(row.response_text)
        continue
      }
      const want = row.response as PyObject
      const got = reply.body as PyObject
      if ('prompt_id' in want) {
        // An accepted prompt: the node_errors of the out-of-range blur radius, byte for byte.
        expect(dumpPyJson(got.node_errors)).toBe(dumpPyJson(want.node_errors))
        await client.ended(String(got.prompt_id))
      } else expect(dumpPyJson(got)).toBe(dumpPyJson(want))
    }
  })

  it('uses up a queue number on refused posts, as the recording shows', async () => {
    const before = (await request(sim.url, 'POST', '/prompt', { prompt: {} })).status
    expect(before).toBe(400)
    const ok = await request(sim.url, 'POST', '/prompt', {
      prompt: imagePipeline(),
      client_id: 'client-a-c1a13554',
    })
    const again = await request(sim.url, 'POST', '/prompt', {
      prompt: imagePipeline(),
      client_id: 'client-a-c1a13554',
    })
    const a = (ok.body as PyObject).number as number
    const b = (again.body as PyObject).number as number
    expect(b).toBe(a + 1)
    await client.ended(String((again.body as PyObject).prompt_id))
  })

  it('answers invalid JSON with a plain-text 500', async () => {
    const reply = await request(sim.url, 'POST', '/prompt', '{"prompt": ')
    expect(reply.status).toBe(500)
    expect(reply.contentType).toBe('text/plain; charset=utf-8')
    expect(reply.text).toBe('500 Internal Server Error\n\nServer got itself in trouble')
  })

  const errorsOf = (body: PyValue | undefined, node: string): PyObject[] =>
    (((body as PyObject).node_errors as PyObject)[node] as PyObject).errors as PyObject[]

  it.each([
    [
      'required_input_missing',
      (p: PyObject) => delete ((p['3'] as PyObject).inputs as PyObject).sigma,
      '3',
      {
        type: 'required_input_missing',
        message: 'Required input is missing',
        details: 'sigma',
        extra_info: { input_name: 'sigma' },
      },
    ],
    [
      'value_smaller_than_min',
      (p: PyObject) => (((p['3'] as PyObject).inputs as PyObject).sigma = 0.01),
      '3',
      {
        type: 'value_smaller_than_min',
        message: 'Value 0.01 smaller than min of 0.1',
        details: 'sigma',
        extra_info: {
          input_name: 'sigma',
          input_config: ['FLOAT', { default: new PyFloat(1), min: 0.1, max: new PyFloat(10), step: 0.1 }],
          received_value: 0.01,
        },
      },
    ],
    [
      'value_not_in_list',
      (p: PyObject) => (((p['2'] as PyObject).inputs as PyObject).upscale_method = 'magic'),
      '2',
      {
        type: 'value_not_in_list',
        message: 'Value not in list',
        details: "upscale_method: 'magic' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
        extra_info: {
          input_name: 'upscale_method',
          input_config: [['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'], {}],
          received_value: 'magic',
        },
      },
    ],
    [
      'invalid_input_type',
      (p: PyObject) => (((p['3'] as PyObject).inputs as PyObject).blur_radius = 'wide'),
      '3',
      {
        type: 'invalid_input_type',
        message: 'Failed to convert an input value to a INT value',
        details: "blur_radius, wide, invalid literal for int() with base 10: 'wide'",
        extra_info: {
          input_name: 'blur_radius',
          input_config: ['INT', { default: 1, min: 1, max: 31, step: 1 }],
          received_value: 'wide',
          exception_message: "invalid literal for int() with base 10: 'wide'",
        },
      },
    ],
    [
      'bad_linked_input',
      (p: PyObject) => (((p['4'] as PyObject).inputs as PyObject).image = ['3', 0, 1]),
      '4',
      {
        type: 'bad_linked_input',
        message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
        details: 'image',
        extra_info: { input_name: 'image', input_config: ['IMAGE', {}], received_value: ['3', 0, 1] },
      },
    ],
    [
      'return_type_mismatch',
      (p: PyObject) => (((p['4'] as PyObject).inputs as PyObject).image = ['1', 1]),
      '4',
      {
        type: 'return_type_mismatch',
        message: 'Return type mismatch between linked nodes',
        details: 'image, received_type(MASK) mismatch input_type(IMAGE)',
        extra_info: {
          input_name: 'image',
          input_config: ['IMAGE', {}],
          received_type: 'MASK',
          linked_node: ['1', 1],
        },
      },
    ],
  ])('reports %s like ComfyUI', async (_name, mutate, node, expected) => {
    const p = imagePipeline()
    mutate(p)
    const reply = await request(sim.url, 'POST', '/prompt', dumpPyJson({ prompt: p }))
    // Outputs that do not depend on the broken node still run (200), otherwise 400.
    const errors = errorsOf(reply.body, node)
    expect(dumpPyJson(errors)).toBe(dumpPyJson([expected]))
    if (reply.status === 200) await sim.idle()
  })

  it('refuses a prompt without output nodes and one with an unknown class', async () => {
    const none = await request(sim.url, 'POST', '/prompt', {
      prompt: { '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } } },
    })
    expect(none.status).toBe(400)
    expect((none.body as PyObject).error).toEqual({
      type: 'prompt_no_outputs',
      message: 'Prompt has no outputs',
      details: '',
      extra_info: {},
    })
    const missing = await request(sim.url, 'POST', '/prompt', { prompt: { '1': { inputs: {} } } })
    expect(missing.status).toBe(400)
    expect(((missing.body as PyObject).error as PyObject).message).toBe(
      'Cannot execute because a node is missing the class_type property.',
    )
  })

  it('refuses a missing checkpoint with value_not_in_list listing the real files', async () => {
    const reply = await request(sim.url, 'POST', '/prompt', {
      prompt: {
        '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'nope.safetensors' } },
        '2': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
        '3': { class_type: 'VAEDecode', inputs: { samples: ['2', 0], vae: ['1', 2] } },
        '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'x' } },
      },
    })
    expect(reply.status).toBe(400)
    expect(errorsOf(reply.body, '1')[0]!.details).toBe(
      "ckpt_name: 'nope.safetensors' not in ['audit-sd15-random.safetensors', 'corrupt-model.safetensors']",
    )
  })

  it('stores the coerced prompt (INT from float, FLOAT from string)', async () => {
    const p = imagePipeline()
    ;((p['3'] as PyObject).inputs as PyObject).blur_radius = 2.7
    ;((p['2'] as PyObject).inputs as PyObject).scale_by = '1.5'
    const reply = await request(sim.url, 'POST', '/prompt', { prompt: p, client_id: 'client-a-c1a13554' })
    expect(reply.status).toBe(200)
    const id = String((reply.body as PyObject).prompt_id)
    await client.ended(id)
    await sim.idle()
    const hist = await request(sim.url, 'GET', `/history/${id}`)
    const stored = (((hist.body as PyObject)[id] as PyObject).prompt as PyValue[])[2] as PyObject
    expect(hist.text).toContain('"blur_radius": 2, "sigma": 1.0')
    expect(((stored['2'] as PyObject).inputs as PyObject).scale_by).toBeDefined()
    expect(hist.text).toContain('"scale_by": 1.5}')
  })
})
