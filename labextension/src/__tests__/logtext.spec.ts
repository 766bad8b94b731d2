import { describe, expect, it } from 'vitest';

import { matchesIn, splitMatches, windowAround } from '../logtext';

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

describe('search over every line', () => {
  it('finds each match with its line, case-insensitively, several to a line', () => {
    expect(matchesIn(['a1', 'b', 'A1 a1', ''], 'a1')).toEqual([
      [0, 0],
      [2, 0],
      [2, 1]
    ]);
    expect(matchesIn(['a'], '')).toEqual([]);
  });

  it('draws the rows around a match, as far as the ends allow', () => {
    expect(windowAround(5000, 12000, 5000)).toEqual([2500, 7500]);
    expect(windowAround(10, 12000, 5000)).toEqual([0, 5000]);
    expect(windowAround(11990, 12000, 5000)).toEqual([7000, 12000]);
    expect(windowAround(3, 10, 5000)).toEqual([0, 10]);
  });
});
