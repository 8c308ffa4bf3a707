// Header rewriting (lib/http/headers.ts): Connection tokens and the fields a
// proxy must drop (RFC 9110 §7.6.1), checked on the functions themselves.
import t from 'tap';
import { connectionTokens, scanRequestHeaders } from '../../lib/http/headers.js';

t.test('Connection tokens: common values are read without splitting, and never shared by mistake', async (t) => {
  t.same([...connectionTokens(['Connection', 'close'])], ['close']);
  t.same([...connectionTokens(['connection', 'Keep-Alive'])], ['keep-alive']);
  // A second Connection line adds to the first (RFC 9110 §5.3): the common set must be copied, not grown.
  t.same([...connectionTokens(['Connection', 'close', 'Connection', 'X-Secret'])].sort(), ['close', 'x-secret']);
  t.same([...connectionTokens(['Connection', 'close'])], ['close'], 'a later message does not see the earlier extra token');
  t.same([...scanRequestHeaders(['Host', 'a', 'Connection', 'Upgrade', 'CONNECTION', ' x-a ,, X-B ']).connection].sort(), ['upgrade', 'x-a', 'x-b']);
  t.same([...scanRequestHeaders(['Host', 'a', 'Connection', 'Upgrade']).connection], ['upgrade']);
  t.equal(connectionTokens(['Host', 'a']).size, 0, 'no Connection field: no tokens');
});
