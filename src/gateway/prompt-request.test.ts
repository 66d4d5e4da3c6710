import { describe, expect, it } from 'vitest'
import { preparePrompt, rewriteStringMember } from './prompt-request.js'

const opts = {
  upstreamClientId: (cid: string | null) =>
    cid === null ? 'g-000000000000~noclient' : `u-111111111111~${cid}`,
  newPromptId: () => 'generated-id',
}

function prep(text: string) {
  const r = preparePrompt(Buffer.from(text, 'utf8'), opts)
  return { ...r, forwarded: r.forwardedBody.toString('utf8') }
}

describe('preparePrompt', () => {
  it('injects client_id and prompt_id when the client gave neither, leaving the rest byte-exact', () => {
    const body =
      '{"prompt": {"10": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "cfg": NaN}}, "2": {}}}'
    const r = prep(body)
    expect(r.parsed).toBe(true)
    expect(r.clientId).toBeNull()
    expect(r.promptId).toBe('generated-id')
    expect(r.promptIdFromClient).toBe(false)
    expect(r.upstreamClientId).toBe('g-000000000000~noclient')
    expect(r.forwarded).toBe(
      '{"client_id": "g-000000000000~noclient", "prompt_id": "generated-id", ' + body.slice(1),
    )
  })

  it('rewrites a top-level client_id and the one in extra_data to the namespaced id', () => {
    const r = prep(
      '{ "prompt": {}, "client_id" : "abc", "extra_data": {"client_id": "old", "x": [1, {"client_id": 2}]}, "prompt_id": "p1"}',
    )
    expect(r.clientId).toBe('abc')
    expect(r.promptId).toBe('p1')
    expect(r.promptIdFromClient).toBe(true)
    expect(r.forwarded).toBe(
      '{ "prompt": {}, "client_id" : "u-111111111111~abc", "extra_data": {"client_id": "u-111111111111~abc", "x": [1, {"client_id": 2}]}, "prompt_id": "p1"}',
    )
  })

  it('takes the client id from extra_data when there is no top-level one', () => {
    const r = prep('{"prompt": {}, "extra_data": {"client_id": "e1"}}')
    expect(r.clientId).toBe('e1')
    expect(JSON.parse(r.forwarded)).toEqual({
      client_id: 'u-111111111111~e1',
      prompt_id: 'generated-id',
      prompt: {},
      extra_data: { client_id: 'u-111111111111~e1' },
    })
  })

  it('treats a null client_id as no client id', () => {
    const r = prep('{"client_id": null}')
    expect(r.clientId).toBeNull()
    expect(JSON.parse(r.forwarded)).toEqual({
      client_id: 'g-000000000000~noclient',
      prompt_id: 'generated-id',
    })
  })

  it('keeps an integer prompt_id as ComfyUI would stringify it and replaces a null one', () => {
    expect(prep('{"prompt_id": 12345678901234567890}').promptId).toBe('12345678901234567890')
    const r = prep('{"prompt_id": null}')
    expect(r.promptId).toBe('generated-id')
    expect(JSON.parse(r.forwarded).prompt_id).toBe('generated-id')
  })

  it('handles an empty object and escaped keys and strings', () => {
    expect(prep('{}').forwarded).toBe('{"client_id": "g-000000000000~noclient", "prompt_id": "generated-id"}')
    const r = prep('{"a\\"}": "}{\\\\", "client_id": "x\\"y"}')
    expect(r.clientId).toBe('x"y')
    expect(JSON.parse(r.forwarded)).toEqual({
      prompt_id: 'generated-id',
      'a"}': '}{\\',
      client_id: 'u-111111111111~x"y',
    })
  })

  it.each(['not json', '[1, 2]', '"s"', '{"a": }'])('forwards %j unchanged', (text) => {
    const r = prep(text)
    expect(r.parsed).toBe(false)
    expect(r.forwarded).toBe(text)
    expect(r.promptId).toBe('generated-id')
  })
})

describe('rewriteStringMember', () => {
  it('rewrites only the named string member', () => {
    const out = rewriteStringMember(
      Buffer.from('{"clientId": "c1", "enabled": true}'),
      'clientId',
      (v) => `ns~${v}`,
    )
    expect(out.toString()).toBe('{"clientId": "ns~c1", "enabled": true}')
  })
  it('leaves bodies without that string member alone', () => {
    const body = Buffer.from('{"clientId": 5}')
    expect(rewriteStringMember(body, 'clientId', (v) => v + '!')).toBe(body)
  })

  describe('the gateway seal in extra_data (issue 10 item 2)', () => {
    const seal = () => '{"v": 1, "seal": "S"}'
    const prepSealed = (text: string) => {
      const r = preparePrompt(Buffer.from(text, 'utf8'), { ...opts, seal })
      return { ...r, forwarded: r.forwardedBody.toString('utf8') }
    }

    it('adds extra_data with the seal when the client sent none', () => {
      const r = prepSealed('{"prompt": {"1": {}}, "client_id": "c", "prompt_id": "p"}')
      expect(r.forwarded).toBe(
        '{"extra_data": {"comfy_audit": {"v": 1, "seal": "S"}}, "prompt": {"1": {}}, "client_id": "u-111111111111~c", "prompt_id": "p"}',
      )
      expect(r.clientSealRemoved).toBeUndefined()
    })

    it('puts the seal first in the client extra_data, every other byte kept', () => {
      const r = prepSealed('{"prompt": {}, "extra_data": {"extra_pnginfo": {"workflow": {"id": 1.0}}}}')
      expect(r.forwarded).toBe(
        '{"client_id": "g-000000000000~noclient", "prompt_id": "generated-id", "prompt": {}, "extra_data": {"comfy_audit": {"v": 1, "seal": "S"}, "extra_pnginfo": {"workflow": {"id": 1.0}}}}',
      )
      expect(prepSealed('{"prompt": {}, "extra_data": {}}').forwarded).toContain(
        '"extra_data": {"comfy_audit": {"v": 1, "seal": "S"}}',
      )
    })

    it.each([
      ['{"comfy_audit": {"forged": true}}', '{"comfy_audit": {"v": 1, "seal": "S"}}'],
      ['{"comfy_audit": 1, "a": 2}', '{"comfy_audit": {"v": 1, "seal": "S"}, "a": 2}'],
      ['{"a": 2, "comfy_audit": 1}', '{"comfy_audit": {"v": 1, "seal": "S"}, "a": 2}'],
      ['{"a": 2,"comfy_audit":1 , "b": 3}', '{"comfy_audit": {"v": 1, "seal": "S"}, "a": 2,"b": 3}'],
    ])('replaces a seal the client sent itself: %s', (extra, forwarded) => {
      const r = prepSealed(`{"prompt": {}, "prompt_id": "p", "client_id": "c", "extra_data": ${extra}}`)
      expect(r.forwarded).toBe(
        `{"prompt": {}, "prompt_id": "p", "client_id": "u-111111111111~c", "extra_data": ${forwarded}}`,
      )
      expect(r.clientSealRemoved).toBe(true)
    })

    it('seals the prompt id and graph that are forwarded', () => {
      const seen: unknown[] = []
      preparePrompt(Buffer.from('{"prompt": {"1": {"x": 18446744073709551615}}, "client_id": "c"}'), {
        ...opts,
        seal: (info) => {
          seen.push(info)
          return null
        },
      })
      expect(seen).toEqual([
        { promptId: 'generated-id', clientId: 'c', prompt: { '1': { x: 18446744073709551615n } } },
      ])
    })

    it('leaves a non-object extra_data alone (ComfyUI refuses it; nothing runs to seal)', () => {
      expect(prepSealed('{"prompt": {}, "extra_data": "x"}').forwarded).not.toContain('comfy_audit')
    })
  })
})
