import type { Role } from '../../src/config/roles.js'
import type { IdentityDirectory } from '../../src/identity/identity-directory.js'

/** Adds each person to the directory and returns their login tokens by name; throws the directory's reason. */
export async function addPeople<N extends string>(
  people: IdentityDirectory,
  list: readonly (readonly [N, Role])[],
  by: string,
): Promise<Record<N, string>> {
  const tokens = {} as Record<N, string>
  for (const [name, role] of list) {
    const added = await people.addPerson(name, role, by)
    if (!added.ok) throw new Error(added.reason)
    tokens[name] = added.value.token
  }
  return tokens
}
