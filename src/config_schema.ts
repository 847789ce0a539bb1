/**
 * A small declarative checker for the config file. Each field names its
 * type, default and limits; `checkObject` walks the file, fills defaults and
 * reports the first problem with its dotted key, so the operator knows
 * exactly what to fix. Unknown keys are errors, with a suggestion when the
 * key is close to a known one.
 */

import { ConfigError } from "./errors.ts";

export type Field =
  | {
    type: "string";
    required?: boolean;
    default?: string;
    enum?: string[];
    check?: (v: string) => string | undefined;
  }
  | {
    type: "integer";
    required?: boolean;
    default?: number;
    min?: number;
    max?: number;
  }
  | { type: "boolean"; required?: boolean; default?: boolean }
  | {
    type: "strings";
    required?: boolean;
    default?: string[];
    nonEmpty?: boolean;
    check?: (v: string) => string | undefined;
  }
  | { type: "object"; required?: boolean; fields: Schema };

export type Schema = Record<string, Field>;

type Json = Record<string, unknown>;

export function checkObject(value: unknown, schema: Schema, path = ""): Json {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(
      `Config key "${path || "(top level)"}" must be an object`,
      path,
    );
  }
  const input = value as Json;
  for (const key of Object.keys(input)) {
    if (!(key in schema)) {
      const full = path ? `${path}.${key}` : key;
      const near = closest(key, Object.keys(schema));
      throw new ConfigError(
        `Config key "${full}" is not known` +
          (near ? `: did you mean "${path ? path + "." : ""}${near}"?` : ""),
        full,
        { hint: `known keys here: ${Object.keys(schema).join(", ")}` },
      );
    }
  }
  const out: Json = {};
  for (const [key, field] of Object.entries(schema)) {
    const full = path ? `${path}.${key}` : key;
    const v = input[key];
    if (v === null && field.type === "object") {
      throw new ConfigError(
        `Config key "${full}" must be an object, not null (leave it out for the defaults)`,
        full,
      );
    }
    if (v === undefined || v === null) {
      if (field.type === "object") {
        if (field.required) {
          throw new ConfigError(`Config key "${full}" is missing`, full);
        }
        out[key] = checkObject({}, field.fields, full);
        continue;
      }
      if (field.required) {
        throw new ConfigError(`Config key "${full}" is missing`, full);
      }
      if ("default" in field && field.default !== undefined) {
        out[key] = Array.isArray(field.default)
          ? [...field.default]
          : field.default;
      }
      continue;
    }
    out[key] = checkField(v, field, full);
  }
  return out;
}

function checkField(v: unknown, field: Field, full: string): unknown {
  const wrong = (what: string) =>
    new ConfigError(
      `Config key "${full}" must be ${what}, not ${describe(v)}`,
      full,
    );
  switch (field.type) {
    case "string": {
      if (typeof v !== "string") throw wrong("a string");
      if (field.enum && !field.enum.includes(v)) {
        throw new ConfigError(
          `Config key "${full}" must be one of ${
            field.enum.map((e) => `"${e}"`).join(", ")
          }, not "${v}"`,
          full,
        );
      }
      const problem = field.check?.(v);
      if (problem) {
        throw new ConfigError(`Config key "${full}": ${problem}`, full);
      }
      return v;
    }
    case "integer": {
      if (typeof v !== "number" || !Number.isInteger(v)) {
        throw wrong("a whole number");
      }
      if (field.min !== undefined && v < field.min) {
        throw new ConfigError(
          `Config key "${full}" must be at least ${field.min}, not ${v}`,
          full,
        );
      }
      if (field.max !== undefined && v > field.max) {
        throw new ConfigError(
          `Config key "${full}" must be at most ${field.max}, not ${v}`,
          full,
        );
      }
      return v;
    }
    case "boolean":
      if (typeof v !== "boolean") throw wrong("true or false");
      return v;
    case "strings": {
      if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
        throw wrong("a list of strings");
      }
      if (field.nonEmpty && v.length === 0) {
        throw new ConfigError(`Config key "${full}" must not be empty`, full);
      }
      for (const s of v as string[]) {
        const problem = field.check?.(s);
        if (problem) {
          throw new ConfigError(`Config key "${full}": ${problem}`, full);
        }
      }
      return [...v];
    }
    case "object":
      return checkObject(v, field.fields, full);
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (typeof v === "string") return `the string "${v}"`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${JSON.stringify(v)}`;
}

function closest(word: string, options: string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const o of options) {
    const d = distance(word.toLowerCase(), o.toLowerCase());
    if (d < bestScore) {
      bestScore = d;
      best = o;
    }
  }
  return bestScore <= Math.max(2, Math.floor(word.length / 3))
    ? best
    : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(
        row[j] + 1,
        row[j - 1] + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = cur;
    }
  }
  return row[b.length];
}
