import { describe, expect, it } from 'vitest';

import { splitMatches } from '../logtext';

describe('splitMatches', () => {
  it('puts each case-insensitive match at an odd index, keeping the original case', () => {
    expect(splitMatches('Error: an ERROR here', 'error')).toEqual([
      '',
      'Error',
      ': an ',
      'ERROR',
      ' here'
    ]);
  });

  it('returns the whole text when nothing matches or nothing is searched', () => {
    expect(splitMatches('all fine', 'error')).toEqual(['all fine']);
    expect(splitMatches('all fine', '')).toEqual(['all fine']);
  });

  it('does not count overlapping matches twice', () => {
    expect(splitMatches('aaaa', 'aa')).toEqual(['', 'aa', '', 'aa', '']);
  });
});
