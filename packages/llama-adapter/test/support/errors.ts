// Assertions on LeanVisionError shared by the tests.
import { expect } from "vitest";
import { LeanVisionError } from "@leanvision/core";

/** Awaits `promise` (or calls and awaits `fn`), expects a LeanVisionError with `code`, and returns it. */
export async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<LeanVisionError> {
  let error: unknown;
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(LeanVisionError);
  expect((error as LeanVisionError).code).toBe(code);
  return error as LeanVisionError;
}
