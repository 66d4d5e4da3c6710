import { describe, expect, it } from 'vitest'
import type { JsonValue } from '../audit/types.js'
import type { Role } from '../config/security-config.js'
import {
  authorize,
  factsNeeded,
  isUnsafeRelativePath,
  normalizeRoute,
  type PolicyFacts,
  type PolicyOptions,
} from './policy.js'

const ALL: PolicyOptions = { visibility: 'all' }
const OWN: PolicyOptions = { visibility: 'own' }
const FACTS: PolicyFacts = {
  owners: new Map<string, string | null>([
    ['p-alice', 'alice'],
    ['p-bob', 'bob'],
    ['p-nobody', null],
  ]),
  running: [{ prompt_id: 'p-bob', user: 'bob' }],
}

function decide(
  role: Role,
  method: string,
  target: string,
  opts: { body?: JsonValue | null; facts?: PolicyFacts; options?: PolicyOptions; user?: string } = {},
): string {
  // As the gateway gives it: the raw target split, the path percent-decoded, nothing normalized.
  const [rawPath, search = ''] = target.split('?', 2) as [string, string?]
  const url = { pathname: decodeURIComponent(rawPath), searchParams: new URLSearchParams(search) }
  const d = authorize(
    {
      user: opts.user ?? (role === 'artist' ? 'alice' : role),
      role,
      method,
      path: url.pathname,
      query: url.searchParams,
      ...(opts.body !== undefined ? { body: opts.body } : {}),
    },
    opts.facts ?? FACTS,
    opts.options ?? ALL,
  )
  if (d.action === 'deny') return `deny ${d.status}`
  if (d.action === 'rewrite') return `rewrite ${JSON.stringify(d.body)}`
  return d.filter ? `allow filter=${d.filter}` : d.auditUser ? `allow auditUser=${d.auditUser}` : 'allow'
}

describe('policy: route classes by role', () => {
  it.each<[string, string, string, string, string]>([
    // method, path, admin, auditor, artist
    ['GET', '/', 'allow', 'deny 403', 'allow'],
    ['GET', '/ws', 'allow', 'deny 403', 'allow'],
    ['POST', '/prompt', 'allow', 'deny 403', 'allow'],
    ['POST', '/api/prompt', 'allow', 'deny 403', 'allow'],
    ['GET', '/object_info', 'allow', 'deny 403', 'allow'],
    ['GET', '/api/jobs', 'allow', 'deny 403', 'allow'],
    ['POST', '/upload/image', 'allow', 'deny 403', 'allow'],
    ['POST', '/free', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/api/free', 'allow', 'deny 403', 'deny 403'],
    ['GET', '/internal/logs', 'allow', 'deny 403', 'deny 403'],
    ['PATCH', '/internal/logs/subscribe', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/manager/reboot', 'allow', 'deny 403', 'deny 403'],
    ['GET', '/api/manager/queue/start', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/customnode/install/git_url', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/api/customnode/install/git_url', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/v2/manager/queue/install', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/snapshot/restore', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/externalmodel/install', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/users', 'allow', 'deny 403', 'deny 403'],
    ['GET', '/users', 'allow', 'deny 403', 'allow'],
    ['GET', '/freedom', 'allow', 'deny 403', 'allow'],
    ['GET', '/_audit/health', 'allow', 'allow', 'allow'],
    ['GET', '/_audit/login', 'allow', 'allow', 'allow'],
    ['POST', '/_audit/login', 'allow', 'allow', 'allow'],
    ['GET', '/_audit/whoami', 'allow', 'allow', 'allow'],
    ['GET', '/_audit/api/sessions', 'allow', 'allow', 'allow auditUser=alice'],
    ['GET', '/_audit/metrics', 'allow', 'allow', 'deny 403'],
    ['GET', '/_audit/ui', 'allow', 'allow', 'allow'],
    ['GET', '/_audit/ui/runs/p-bob', 'allow', 'allow', 'allow'],
    ['POST', '/_audit/ui/', 'allow', 'deny 403', 'deny 403'],
    ['GET', '/_audit/api/integrity', 'allow', 'allow', 'deny 403'],
    ['GET', '/_audit/api/people', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/_audit/api/people/bob/disable', 'allow', 'deny 403', 'deny 403'],
    ['POST', '/_audit/api/prune', 'allow', 'deny 403', 'deny 403'],
    ['GET', '/a/../free', 'deny 400', 'deny 400', 'deny 400'],
    ['GET', '/api/./free', 'deny 400', 'deny 400', 'deny 400'],
    ['GET', '//free', 'allow', 'deny 403', 'deny 403'],
  ])('%s %s: admin %s, auditor %s, artist %s', (method, path, admin, auditor, artist) => {
    expect(decide('admin', method, path)).toBe(admin)
    expect(decide('auditor', method, path)).toBe(auditor)
    expect(decide('artist', method, path)).toBe(artist)
  })

  it('applies configured admin-only paths to artists', () => {
    const options = { visibility: 'all' as const, adminOnlyPaths: ['/my_pack/run'] }
    expect(decide('artist', 'POST', '/my_pack/run/now', { options })).toBe('deny 403')
    expect(decide('artist', 'POST', '/api/my_pack/run', { options })).toBe('deny 403')
    expect(decide('admin', 'POST', '/my_pack/run', { options })).toBe('allow')
  })
})

describe('policy: interrupts, deletions and clears by artists', () => {
  it.each<[string, JsonValue | null, string]>([
    ['/interrupt', { prompt_id: 'p-alice' }, 'allow'],
    ['/interrupt', { prompt_id: 'p-bob' }, 'deny 403'],
    ['/interrupt', { prompt_id: 'p-nobody' }, 'deny 403'],
    ['/interrupt', { prompt_id: 'p-unknown' }, 'deny 403'],
    ['/queue', { delete: ['p-alice'] }, 'allow'],
    ['/queue', { delete: ['p-alice', 'p-bob'] }, 'deny 403'],
    ['/queue', { delete: 'p-alice' }, 'deny 400'],
    ['/queue', { clear: true }, 'deny 403'],
    ['/queue', { clear: false, delete: ['p-alice'] }, 'allow'],
    ['/history', { delete: ['p-alice'] }, 'allow'],
    ['/history', { delete: ['p-bob'] }, 'deny 403'],
    ['/history', { clear: true }, 'deny 403'],
    ['/api/history', { clear: 1 }, 'deny 403'],
    ['/queue', null, 'allow'],
  ])('POST %s %j → %s', (path, body, expected) => {
    expect(decide('artist', 'POST', path, { body })).toBe(expected)
    // admins may do all of it
    if (!expected.startsWith('deny 400')) expect(decide('admin', 'POST', path, { body })).toBe('allow')
  })

  it('turns a global interrupt into an interrupt of the artist own running prompt', () => {
    const facts: PolicyFacts = { owners: new Map(), running: [{ prompt_id: 'p-alice', user: 'alice' }] }
    expect(decide('artist', 'POST', '/interrupt', { body: {}, facts })).toBe(
      'rewrite {"prompt_id":"p-alice"}',
    )
    expect(decide('artist', 'POST', '/api/interrupt', { body: null, facts })).toBe(
      'rewrite {"prompt_id":"p-alice"}',
    )
  })

  it("refuses a global interrupt when the running prompt is someone else's or none runs", () => {
    expect(decide('artist', 'POST', '/interrupt', { body: {} })).toBe('deny 403')
    expect(
      decide('artist', 'POST', '/interrupt', { body: {}, facts: { owners: new Map(), running: [] } }),
    ).toBe('deny 403')
    expect(decide('admin', 'POST', '/interrupt', { body: {} })).toBe('allow')
  })

  it('asks for exactly the facts it needs', () => {
    const q = new URLSearchParams()
    const base = { user: 'alice', role: 'artist' as const, method: 'POST', query: q }
    expect(factsNeeded({ ...base, path: '/interrupt', body: {} }, ALL)).toEqual({
      promptIds: [],
      running: true,
    })
    expect(factsNeeded({ ...base, path: '/api/interrupt', body: { prompt_id: 'x' } }, ALL)).toEqual({
      promptIds: ['x'],
      running: false,
    })
    expect(factsNeeded({ ...base, path: '/queue', body: { delete: ['a', 'b'] } }, ALL)).toEqual({
      promptIds: ['a', 'b'],
      running: false,
    })
    expect(factsNeeded({ ...base, role: 'admin', path: '/queue', body: { delete: ['a'] } }, ALL)).toEqual({
      promptIds: [],
      running: false,
    })
    expect(factsNeeded({ ...base, method: 'GET', path: '/history/p1' }, OWN)).toEqual({
      promptIds: ['p1'],
      running: false,
    })
    expect(factsNeeded({ ...base, method: 'GET', path: '/history/p1' }, ALL)).toEqual({
      promptIds: [],
      running: false,
    })
    expect(factsNeeded({ ...base, method: 'GET', path: '/_audit/api/sessions/p9' }, ALL)).toEqual({
      promptIds: ['p9'],
      running: false,
    })
    expect(
      factsNeeded(
        {
          ...base,
          method: 'GET',
          path: '/view',
          query: new URLSearchParams('filename=a.png&subfolder=s&type=output'),
        },
        OWN,
      ),
    ).toEqual({ promptIds: [], running: false, file: { filename: 'a.png', subfolder: 's', type: 'output' } })
  })
})

describe('policy: visibility own', () => {
  it.each<[string, string, string]>([
    ['/history', 'allow filter=own', 'allow'],
    ['/api/history', 'allow filter=own', 'allow'],
    ['/queue', 'allow filter=own', 'allow'],
    ['/api/jobs', 'allow filter=own', 'allow'],
    ['/history/p-alice', 'allow', 'allow'],
    ['/history/p-bob', 'deny 404', 'allow'],
    ['/api/jobs/p-bob', 'deny 404', 'allow'],
    ['/api/jobs/p-alice', 'allow', 'allow'],
    ['/view?filename=x.png&type=input', 'allow', 'allow'],
    // issue 9 class 3: temp previews and annotated names are someone's files too.
    ['/view?filename=x.png&type=temp', 'deny 404', 'allow'],
    ['/view?filename=x.png%20[output]&type=input', 'deny 404', 'allow'],
    ['/view?filename=x.png%20[temp]', 'deny 404', 'allow'],
    ['/view?filename=x.png%20[input]&type=output', 'allow', 'allow'],
    ['/view?filename=x.png&type=output', 'deny 404', 'allow'],
    ['/view?filename=x.png', 'deny 404', 'allow'],
  ])('GET %s: own %s, all %s', (path, own, all) => {
    expect(decide('artist', 'GET', path, { options: OWN })).toBe(own)
    expect(decide('artist', 'GET', path, { options: ALL })).toBe(all)
    expect(decide('admin', 'GET', path, { options: OWN })).toBe('allow')
  })

  it('shows an artist their own output files', () => {
    const facts = { ...FACTS, fileOwner: 'alice' }
    expect(decide('artist', 'GET', '/view?filename=x.png&type=output', { options: OWN, facts })).toBe('allow')
    expect(
      decide('artist', 'GET', '/view?filename=x.png&type=output', {
        options: OWN,
        facts: { ...FACTS, fileOwner: 'bob' },
      }),
    ).toBe('deny 404')
  })
})

describe('policy: audit API for artists', () => {
  it.each<[string, string]>([
    ['/_audit/api/sessions', 'allow auditUser=alice'],
    ['/_audit/api/sessions?user=alice', 'allow auditUser=alice'],
    ['/_audit/api/sessions?user=bob', 'deny 403'],
    ['/_audit/api/sessions/p-alice', 'allow'],
    ['/_audit/api/sessions/p-bob', 'deny 404'],
    ['/_audit/api/node-runs?session=p-alice', 'allow'],
    ['/_audit/api/node-runs?session=p-bob', 'deny 403'],
    ['/_audit/api/node-runs', 'deny 403'],
    ['/_audit/api/export', 'deny 403'],
    // issue 13: the dashboard's run table, live updates and a run's evidence, own runs only
    ['/_audit/api/runs', 'allow auditUser=alice'],
    ['/_audit/api/runs?user=bob', 'deny 403'],
    ['/_audit/api/live', 'allow auditUser=alice'],
    ['/_audit/api/live?user=bob', 'deny 403'],
    ['/_audit/api/sessions/p-alice/evidence', 'allow'],
    ['/_audit/api/sessions/p-bob/evidence', 'deny 404'],
    ['/_audit/api/sessions/p-alice/integrity', 'allow'],
    ['/_audit/api/sessions/p-bob/integrity', 'deny 404'],
    // issue 12: every aggregate is narrowed to the artist's own runs
    ...['stats', 'usage', 'trends', 'regressions', 'correlate', 'diff', 'suggest'].flatMap(
      (c): [string, string][] => [
        [`/_audit/api/${c}`, 'allow auditUser=alice'],
        [`/_audit/api/${c}?user=alice`, 'allow auditUser=alice'],
        [`/_audit/api/${c}?user=bob`, 'deny 403'],
      ],
    ),
  ])('GET %s → %s', (path, expected) => {
    expect(decide('artist', 'GET', path)).toBe(expected)
    expect(decide('auditor', 'GET', path)).toBe('allow')
  })
})

describe('policy: path traversal', () => {
  it.each([
    '/view?filename=../../etc/passwd',
    '/view?filename=/etc/passwd',
    '/view?filename=x.png&subfolder=../..',
    '/view?filename=x.png&subfolder=a/../../b',
    '/view?filename=..%5C..%5Cwin.ini',
    '/userdata/..%2F..%2Fsecret',
    '/v2/userdata?path=../x',
    '/userdata?dir=../../',
  ])('refuses %s for everyone', (target) => {
    for (const role of ['admin', 'artist'] as const) expect(decide(role, 'GET', target)).toBe('deny 400')
  })

  it('keeps ordinary file names', () => {
    expect(decide('artist', 'GET', '/view?filename=ComfyUI_00001_.png&subfolder=a/b&type=output')).toBe(
      'allow',
    )
    expect(decide('artist', 'GET', '/userdata/workflows%2Fmy.json')).toBe('allow')
  })

  it.each([
    ['a/b.png', false],
    ['..', true],
    ['a/../b', true],
    ['a..b.png', false],
    ['C:/x', true],
    ['a\\b', true],
    ['x\0y', true],
  ])('isUnsafeRelativePath(%j) is %s', (text, unsafe) => {
    expect(isUnsafeRelativePath(text)).toBe(unsafe)
  })

  it('normalizes routes as ComfyUI sees them', () => {
    expect(normalizeRoute('/api/queue')).toEqual({ kind: 'comfy', path: '/queue' })
    expect(normalizeRoute('/api//queue')).toEqual({ kind: 'comfy', path: '/queue' })
    expect(normalizeRoute('/_audit/api/x')).toEqual({ kind: 'audit', path: '/_audit/api/x' })
    expect(normalizeRoute('/x/./y').kind).toBe('bad')
  })
})
