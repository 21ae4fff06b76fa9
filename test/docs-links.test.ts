/**
 * Every relative link in README.md and docs/*.md resolves inside the
 * repository: the file (or folder) exists and, when the link names a heading
 * (`file.md#heading`), that heading exists. A clone must not point outside itself.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from './support/daemon.js';

const DOCS = [
  'README.md',
  ...readdirSync(join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** Markdown links `[text](target)` and `![alt](target)`, outside code fences and inline code. */
function linksOf(markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
}

/** GitHub's anchors for a file's headings: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf(markdown: string): Set<string> {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '');
  return new Set(
    [...prose.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) =>
      m[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    ),
  );
}

describe('documentation links', () => {
  it('finds the documents to check, README.md and docs/design.md among them', () => {
    assert.ok(DOCS.includes('README.md') && DOCS.includes('docs/design.md'), DOCS.join(', '));
  });

  for (const doc of DOCS) {
    it(`${doc}: every relative link resolves inside the repository`, () => {
      const text = readFileSync(join(REPO_ROOT, doc), 'utf8');
      const problems: string[] = [];
      for (const link of linksOf(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // http:, https:, mailto: — not a file in the repository
        const [path = '', anchor] = link.split('#');
        const target = path === '' ? join(REPO_ROOT, doc) : resolve(dirname(join(REPO_ROOT, doc)), path);
        const inside = relative(REPO_ROOT, target);
        if (inside.startsWith('..')) {
          problems.push(`${link}: points outside the repository`);
          continue;
        }
        if (!existsSync(target)) {
          problems.push(`${link}: ${inside} does not exist`);
          continue;
        }
        if (anchor && statSync(target).isFile() && target.endsWith('.md')) {
          if (!anchorsOf(readFileSync(target, 'utf8')).has(anchor))
            problems.push(`${link}: ${inside} has no heading #${anchor}`);
        }
      }
      assert.deepEqual(problems, []);
    });
  }

  it('a broken link is caught: the checks above can fail', () => {
    assert.deepEqual(linksOf('see [a](../shared/DESIGN.md) and `[b](c)`'), ['../shared/DESIGN.md']);
    assert.ok(anchorsOf('## Graph files\n').has('graph-files'));
    assert.ok(relative(REPO_ROOT, resolve(REPO_ROOT, '../shared/DESIGN.md')).startsWith('..'));
  });
});
