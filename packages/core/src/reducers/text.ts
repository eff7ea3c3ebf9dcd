// Shared pieces of the reducers' short text forms.

/** A number in a short spec: decimal, optional sign, fraction and exponent (what String(number) writes). */
export const NUM = String.raw`[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?`;

/** Matches `body` against `^(pattern)$` (case-insensitive, whitespace removed); the groups, or undefined. */
export function matchShort(pattern: string, body: string): string[] | undefined {
  return new RegExp(`^${pattern}$`, "i").exec(body.replace(/\s+/g, "")) ?? undefined;
}

/** The short form `head:N` of a reducer with one numeric parameter. */
export function oneNumberShort<Spec>(head: string, syntax: string, build: (n: number) => Spec) {
  return {
    head,
    syntax,
    parse(body: string): Spec | undefined {
      const m = matchShort(`(${NUM})`, body);
      return m && build(+m[1]);
    }
  };
}
