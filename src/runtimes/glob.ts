/**
 * Shell-style globs (`*` any run of characters, `?` one), matched against a
 * whole string: `echo`, `/usr/bin/*`, `LC_*`.
 */
export function globMatcher(globs: readonly string[]): (text: string) => boolean {
  const patterns = globs.map(
    (g) =>
      new RegExp(
        `^${g
          .split('')
          .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
          .join('')}$`,
        's',
      ),
  );
  return (text) => patterns.some((p) => p.test(text));
}
