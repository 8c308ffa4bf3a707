// What a config string may hold once wsgate writes it into a request head, or
// matches it against one. Strings are written as latin1, so a code point above
// 0xFF is narrowed to its low byte: U+010D U+010A become CR LF and split the
// head (the CVE-2018-12116 class; issue #6). Each check allows only what the
// grammar allows, rather than refusing a list of known-bad characters.

/** RFC 9110 §5.6.2 tchar: a header name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5 field-value: HTAB, SP, VCHAR, obs-text; no CR, LF, NUL, other control or DEL. */
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** RFC 9112 §3.2 request-target: visible ASCII only (no SP); anything else is written percent-encoded. */
const NOT_TARGET = /[^\x21-\x7e]/;

export const isToken = (text: string): boolean => TOKEN.test(text);
export const isFieldValue = (text: string): boolean => !NOT_FIELD_VALUE.test(text);
export const isTargetText = (text: string): boolean => !NOT_TARGET.test(text);

/**
 * `U+010D at index 1`: the first character a field value may not hold. Error
 * messages name it instead of echoing the value, which may be a credential.
 */
export function describeBadValueChar(text: string): string {
  const at = text.search(NOT_FIELD_VALUE);
  return `U+${text.charCodeAt(at).toString(16).toUpperCase().padStart(4, '0')} at index ${at}`;
}
