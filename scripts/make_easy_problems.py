"""Write the demo's train/eval split of easy function problems (pipeline/assets/easy_{train,eval}.jsonl).

Each problem is written here once by hand: a signature, a one-paragraph docstring, two docstring
examples whose expected values are written by hand too, a reference body, and the inputs of 5-8
hidden tests. The hidden tests' expected values are computed by running the reference solution (so
they cannot disagree with it); the hand-written examples check the reference against the docstring.
A docstring example that shows an edge case (an empty or zero argument) is also a hidden test, so the
hidden suite checks that case on its own (the bundled easy set repeats examples in its tests too).
Optional ``wrong`` bodies are plausible mistakes that the hidden tests must catch.

The eval split holds different tasks, not the training tasks with other constants: no eval task is a
sibling of a training one (e.g. "sum of the even numbers" in train excludes "sum of the odd numbers"
from eval). tests/data/test_easy_split.py checks the committed files; ``--check`` checks that they
are what this script writes.

    python scripts/make_easy_problems.py           # rewrite both files
    python scripts/make_easy_problems.py --check   # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "pipeline" / "assets"
SOURCES = {"train": "plumline-easy-train", "eval": "plumline-easy-eval"}


@dataclass
class Task:
    family: str
    signature: str  # "name(args) -> ret"
    doc: str
    examples: list[tuple[str, str]]  # (call arguments, expected repr), written by hand
    body: str
    tests: list[str]  # call arguments of the hidden tests
    level: str = "easy"
    wrong: list[str] = field(default_factory=list)  # plausible wrong bodies the tests must catch

    @property
    def name(self) -> str:
        return self.signature.split("(", 1)[0]


def t(family, signature, doc, examples, body, tests, level="easy", wrong=()):
    return Task(family, signature, doc, list(examples), body, list(tests), level, list(wrong))


# ---------------------------------------------------------------------------------------------------
# Training split
# ---------------------------------------------------------------------------------------------------
TRAIN = [
    # strings -------------------------------------------------------------------------------------
    t("strings", "reverse_words(s: str) -> str",
      "Return the words of s in reverse order, joined by single spaces.",
      [("'hello world'", "'world hello'"), ("'a b c'", "'c b a'")],
      "return ' '.join(s.split()[::-1])",
      ["''", "'one'", "'the quick brown fox'", "'  padded   words '", "'x y'"]),
    t("strings", "count_uppercase(s: str) -> int",
      "Return how many characters of s are uppercase letters.",
      [("'Hello World'", "2"), ("'abc'", "0")],
      "return sum(1 for c in s if c.isupper())",
      ["''", "'ABC'", "'aBcDeF'", "'123 !?'", "'Python IS Fun'"]),
    t("strings", "remove_spaces(s: str) -> str",
      "Return s with every space character removed.",
      [("'a b c'", "'abc'"), ("'hello'", "'hello'")],
      "return s.replace(' ', '')",
      ["''", "'   '", "' lead and trail '", "'no-spaces'", "'a  b'"], level="very easy"),
    t("strings", "repeat_string(s: str, n: int) -> str",
      "Return s repeated n times; an empty string when n is zero or negative.",
      [("'ab', 3", "'ababab'"), ("'x', 0", "''")],
      "return s * n if n > 0 else ''",
      ["'hi', 1", "'', 5", "'z', 4", "'abc', -2", "'ok', 2"], level="very easy"),
    t("strings", "first_word(s: str) -> str",
      "Return the first word of s (words are separated by whitespace); an empty string if s has no "
      "words.",
      [("'hello big world'", "'hello'"), ("''", "''")],
      "words = s.split()\nreturn words[0] if words else ''",
      ["'single'", "'   leading spaces here'", "'   '", "'a b'", "'x\\ty'"]),
    t("strings", "last_char(s: str) -> str",
      "Return the last character of s, or an empty string if s is empty.",
      [("'hello'", "'o'"), ("''", "''")],
      "return s[-1] if s else ''",
      ["'a'", "'xyz'", "'end!'", "'  '", "'12345'"], level="very easy"),
    t("strings", "starts_with_vowel(s: str) -> bool",
      "Return True if s starts with a vowel (a, e, i, o, u, either case), else False.",
      [("'apple'", "True"), ("'banana'", "False")],
      "return bool(s) and s[0].lower() in 'aeiou'",
      ["''", "'Orange'", "'umbrella'", "'Yellow'", "'E'", "'xylophone'"]),
    t("strings", "swap_case(s: str) -> str",
      "Return s with lowercase letters made uppercase and uppercase letters made lowercase.",
      [("'Hello'", "'hELLO'"), ("'abc'", "'ABC'")],
      "return s.swapcase()",
      ["''", "'ABC'", "'MiXeD 123'", "'!?'", "'a'"], level="very easy"),
    t("strings", "capitalize_first(s: str) -> str",
      "Return s with its first character made uppercase and the rest unchanged.",
      [("'hello'", "'Hello'"), ("'hELLO'", "'HELLO'")],
      "return s[:1].upper() + s[1:]",
      ["''", "'a'", "'already Upper'", "'1abc'", "'xYZ'"],
      wrong=["return s.capitalize()", "return s.title()"]),
    t("strings", "join_with_dash(words: list[str]) -> str",
      "Return the words joined into one string with a '-' between neighbours.",
      [("['a', 'b', 'c']", "'a-b-c'"), ("['solo']", "'solo'")],
      "return '-'.join(words)",
      ["[]", "['x', 'y']", "['', '']", "['well', 'known', 'fact']", "['1', '2', '3', '4']"],
      level="very easy"),
    t("strings", "longest_word(words: list[str]) -> str",
      "Return the longest string in words (the first one if several are equally long); an empty string "
      "if words is empty.",
      [("['a', 'abc', 'ab']", "'abc'"), ("['hi', 'yo']", "'hi'")],
      "best = ''\nfor w in words:\n    if len(w) > len(best):\n        best = w\nreturn best",
      ["[]", "['one']", "['aa', 'bbb', 'ccc']", "['', 'x']", "['short', 'longer', 'tiny']"],
      wrong=["return sorted(words, key=len)[-1] if words else ''"]),
    t("strings", "remove_vowels(s: str) -> str",
      "Return s with all vowels (a, e, i, o, u, either case) removed.",
      [("'hello'", "'hll'"), ("'AEIOU'", "''")],
      "return ''.join(c for c in s if c.lower() not in 'aeiou')",
      ["''", "'rhythm'", "'Programming'", "'aAbB'", "'Queue up'"],
      wrong=["return ''.join(c for c in s if c not in 'aeiou')"]),
    t("strings", "double_chars(s: str) -> str",
      "Return a string where every character of s appears twice in a row.",
      [("'abc'", "'aabbcc'"), ("'hi!'", "'hhii!!'")],
      "return ''.join(c * 2 for c in s)",
      ["''", "'a'", "'aa'", "'1 2'", "'Zz'"], level="very easy"),
    t("strings", "is_palindrome_ignore_case(s: str) -> bool",
      "Return True if s reads the same forwards and backwards when case is ignored.",
      [("'Racecar'", "True"), ("'Hello'", "False")],
      "low = s.lower()\nreturn low == low[::-1]",
      ["''", "'a'", "'Abba'", "'AbcA'", "'noon'", "'ab'"],
      wrong=["return s == s[::-1]"]),
    t("strings", "count_substring(s: str, sub: str) -> int",
      "Return how many non-overlapping times sub occurs in s (sub is never empty).",
      [("'banana', 'an'", "2"), ("'hello', 'z'", "0")],
      "return s.count(sub)",
      ["'', 'a'", "'aaaa', 'aa'", "'abcabc', 'abc'", "'Hello', 'h'", "'mississippi', 'ss'"]),
    t("strings", "spaces_to_underscores(s: str) -> str",
      "Return s with every space replaced by an underscore.",
      [("'hello world'", "'hello_world'"), ("'abc'", "'abc'")],
      "return s.replace(' ', '_')",
      ["''", "' '", "'a b c'", "'  two'", "'under_score already'"], level="very easy"),
    t("strings", "initials(name: str) -> str",
      "Return the uppercase first letters of the words in name, concatenated.",
      [("'john smith'", "'JS'"), ("'Ada Lovelace King'", "'ALK'")],
      "return ''.join(w[0].upper() for w in name.split())",
      ["''", "'x'", "'  spaced   out  '", "'Grace hopper'", "'a b c d'"]),
    t("strings", "middle_char(s: str) -> str",
      "Return the middle character of s if its length is odd, the middle two characters if it is "
      "even, and an empty string if s is empty.",
      [("'abc'", "'b'"), ("'abcd'", "'bc'")],
      "if not s:\n    return ''\nmid = len(s) // 2\nreturn s[mid] if len(s) % 2 else s[mid - 1:mid + 1]",
      ["''", "'a'", "'ab'", "'hello'", "'middle'", "'testing'"], level="medium"),
    t("strings", "count_digits_in_string(s: str) -> int",
      "Return how many characters of s are decimal digits.",
      [("'a1b2c3'", "3"), ("'abc'", "0")],
      "return sum(1 for c in s if c.isdigit())",
      ["''", "'12345'", "'phone: 555-0101'", "'-7'", "'no digits!'"]),
    t("strings", "pad_with_zeros(s: str, width: int) -> str",
      "Return s with '0' characters added on the left until it is at least width characters long.",
      [("'42', 5", "'00042'"), ("'12345', 3", "'12345'")],
      "return '0' * (width - len(s)) + s",
      ["'', 3", "'7', 1", "'7', 2", "'abc', 0", "'9', 4"]),
    t("strings", "truncate(s: str, n: int) -> str",
      "Return the first n characters of s (all of s if it is shorter).",
      [("'hello', 2", "'he'"), ("'hi', 5", "'hi'")],
      "return s[:n]",
      ["'', 3", "'abc', 0", "'abcdef', 6", "'abcdef', 1", "'truncate me', 8"], level="very easy"),
    t("strings", "is_all_lowercase(s: str) -> bool",
      "Return True if s has at least one letter and every letter in it is lowercase.",
      [("'hello world'", "True"), ("'Hello'", "False")],
      "return s.islower()",
      ["''", "'123'", "'abc123'", "'ABC'", "'mixed Case'", "'a'"]),
    t("strings", "alternate_caps(s: str) -> str",
      "Return s with characters at even positions (0, 2, ...) uppercased and those at odd positions "
      "lowercased.",
      [("'abcd'", "'AbCd'"), ("'HELLO'", "'HeLlO'")],
      "return ''.join(c.upper() if i % 2 == 0 else c.lower() for i, c in enumerate(s))",
      ["''", "'a'", "'xy'", "'a b c'", "'PyThOn'"], level="medium"),
    t("strings", "remove_char(s: str, ch: str) -> str",
      "Return s with every occurrence of the character ch removed.",
      [("'banana', 'a'", "'bnn'"), ("'hello', 'z'", "'hello'")],
      "return s.replace(ch, '')",
      ["'', 'a'", "'aaa', 'a'", "'Apple', 'a'", "'a-b-c', '-'", "'mississippi', 's'"], level="very easy"),
    t("strings", "first_repeated_char(s: str) -> str",
      "Return the first character of s that appears for the second time while reading left to right; "
      "an empty string if no character repeats.",
      [("'abcbad'", "'b'"), ("'abc'", "''")],
      "seen = set()\nfor c in s:\n    if c in seen:\n        return c\n    seen.add(c)\nreturn ''",
      ["''", "'aa'", "'abca'", "'abba'", "'xyzzy'", "'Aa'"], level="medium",
      wrong=["for i, c in enumerate(s):\n    if c in s[i + 1:]:\n        return c\nreturn ''"]),
    t("strings", "reverse_each_word(s: str) -> str",
      "Reverse every word of s but keep the words in order; words are separated by single spaces.",
      [("'ab cd'", "'ba dc'"), ("'hello'", "'olleh'")],
      "return ' '.join(w[::-1] for w in s.split(' '))",
      ["''", "'a b'", "'abc def ghi'", "'racecar level'", "'Hi There'"]),
    t("strings", "strip_punctuation(s: str) -> str",
      "Return s without the punctuation characters '.', ',', '!' and '?'.",
      [("'Hi, there!'", "'Hi there'"), ("'ok'", "'ok'")],
      "return ''.join(c for c in s if c not in '.,!?')",
      ["''", "'...'", "'What? Why!'", "'a.b,c'", "'keep-dash; semi'"]),
    t("strings", "is_binary_string(s: str) -> bool",
      "Return True if s is non-empty and made only of the characters '0' and '1'.",
      [("'1010'", "True"), ("'102'", "False")],
      "return bool(s) and all(c in '01' for c in s)",
      ["''", "'0'", "'1'", "'11 0'", "'abc'", "'000111'"]),
    t("strings", "rotate_string_left(s: str, k: int) -> str",
      "Move the first k characters of s to its end (k may be larger than the length of s); return "
      "s unchanged if it is empty.",
      [("'abcde', 2", "'cdeab'"), ("'abc', 3", "'abc'")],
      "if not s:\n    return s\nk %= len(s)\nreturn s[k:] + s[:k]",
      ["'', 4", "'abc', 0", "'abc', 4", "'hello', 1", "'xy', 7", "'rotate', 5"], level="medium",
      wrong=["return s[k:] + s[:k]"]),
    t("strings", "censor_word(text: str, word: str) -> str",
      "Replace each occurrence of word in text by as many '*' characters as word has letters.",
      [("'you are bad', 'bad'", "'you are ***'"), ("'clean', 'bad'", "'clean'")],
      "return text.replace(word, '*' * len(word))",
      ["'', 'x'", "'bad bad', 'bad'", "'a', 'a'", "'badge', 'bad'", "'Bad bad', 'bad'"]),
    t("strings", "count_words(s: str) -> int",
      "Return the number of words in s (words are separated by any whitespace).",
      [("'hello big world'", "3"), ("''", "0")],
      "return len(s.split())",
      ["'one'", "'   '", "'  two   words '", "'a\\nb\\tc'", "'x y z w'"], level="very easy"),
    t("strings", "char_list(s: str) -> list[str]",
      "Return the characters of s as a list.",
      [("'abc'", "['a', 'b', 'c']"), ("''", "[]")],
      "return list(s)",
      ["'a'", "'a b'", "'112'", "'!?'", "'hello'"], level="very easy"),
    t("strings", "ends_with(s: str, suffix: str) -> bool",
      "Return True if s ends with suffix, else False.",
      [("'hello', 'lo'", "True"), ("'hello', 'he'", "False")],
      "return s.endswith(suffix)",
      ["'', ''", "'abc', ''", "'', 'a'", "'abc', 'abc'", "'abc', 'xabc'", "'test.py', '.py'"],
      level="very easy"),
    t("strings", "count_char_ignore_case(s: str, ch: str) -> int",
      "Return how many times the letter ch occurs in s, ignoring case.",
      [("'Banana', 'a'", "3"), ("'Apple', 'A'", "1")],
      "return s.lower().count(ch.lower())",
      ["'', 'a'", "'AAAA', 'a'", "'aaaa', 'A'", "'xyz', 'q'", "'MiSsIsSiPpI', 's'"]),
    t("strings", "to_lower_no_spaces(s: str) -> str",
      "Return s in lowercase with all spaces removed.",
      [("'Hello World'", "'helloworld'"), ("'ABC'", "'abc'")],
      "return s.lower().replace(' ', '')",
      ["''", "'   '", "'a B c'", "'Mixed CASE text'", "'x'"]),

    # lists ---------------------------------------------------------------------------------------
    t("lists", "sum_of_evens(nums: list[int]) -> int",
      "Return the sum of the even numbers in nums.",
      [("[1, 2, 3, 4]", "6"), ("[1, 3, 5]", "0")],
      "return sum(n for n in nums if n % 2 == 0)",
      ["[]", "[2]", "[-2, -4, 1]", "[0, 0, 7]", "[10, 11, 12, 13]", "[2, 2, 2]"],
      wrong=["return sum(n for n in nums if n % 2 == 1)", "return sum(nums[::2])"]),
    t("lists", "product_of_list(nums: list[int]) -> int",
      "Return the product of all numbers in nums; the product of an empty list is 1.",
      [("[2, 3, 4]", "24"), ("[]", "1")],
      "result = 1\nfor n in nums:\n    result *= n\nreturn result",
      ["[5]", "[1, 0, 9]", "[-2, 3]", "[-1, -1, -1]", "[10, 10]"],
      wrong=["result = 0\nfor n in nums:\n    result *= n\nreturn result"]),
    t("lists", "count_negatives(nums: list[int]) -> int",
      "Return how many numbers in nums are negative (less than zero).",
      [("[-1, 2, -3]", "2"), ("[0, 1, 2]", "0")],
      "return sum(1 for n in nums if n < 0)",
      ["[]", "[0]", "[-5]", "[-1, -1, -1, 4]", "[3, -0, -7, 8]"], level="very easy",
      wrong=["return sum(1 for n in nums if n <= 0)"]),
    t("lists", "list_range(nums: list[int]) -> int",
      "Return the difference between the largest and the smallest number of nums, or 0 if nums is "
      "empty.",
      [("[3, 9, 1]", "8"), ("[]", "0")],
      "return max(nums) - min(nums) if nums else 0",
      ["[5]", "[-3, 3]", "[2, 2, 2]", "[-10, -20, -5]", "[0, 100, 50]"]),
    t("lists", "first_or_none(items: list)",
      "Return the first element of items, or None if items is empty.",
      [("[4, 5, 6]", "4"), ("['x']", "'x'")],
      "return items[0] if items else None",
      ["[]", "[None, 1]", "[0]", "[[1], [2]]", "['a', 'b']"], level="very easy"),
    t("lists", "reverse_list(items: list) -> list",
      "Return a new list with the elements of items in reverse order.",
      [("[1, 2, 3]", "[3, 2, 1]"), ("[]", "[]")],
      "return items[::-1]",
      ["[1]", "['a', 'b']", "[1, 1, 2]", "[[1, 2], [3]]", "[5, 4, 3, 2, 1]"], level="very easy"),
    t("lists", "square_all(nums: list[int]) -> list[int]",
      "Return a list of the squares of the numbers in nums, in order.",
      [("[1, 2, 3]", "[1, 4, 9]"), ("[-2]", "[4]")],
      "return [n * n for n in nums]",
      ["[]", "[0]", "[-1, 1]", "[10, -10, 3]", "[7]"], level="very easy"),
    t("lists", "running_sum(nums: list[int]) -> list[int]",
      "Return the running totals of nums: element i is the sum of nums[0] through nums[i].",
      [("[1, 2, 3]", "[1, 3, 6]"), ("[5]", "[5]")],
      "out = []\ntotal = 0\nfor n in nums:\n    total += n\n    out.append(total)\nreturn out",
      ["[]", "[0, 0]", "[1, -1, 1, -1]", "[-5, -5]", "[10, 20, 30, 40]"],
      wrong=["return [sum(nums[:i]) for i in range(len(nums))]"]),
    t("lists", "index_of_max(nums: list[int]) -> int",
      "Return the index of the largest number in nums (the first one if it occurs several times), "
      "or -1 if nums is empty.",
      [("[3, 9, 2]", "1"), ("[]", "-1")],
      "if not nums:\n    return -1\nreturn nums.index(max(nums))",
      ["[7]", "[1, 5, 5]", "[-3, -1, -2]", "[0, 0, 0]", "[4, 3, 2, 10]"],
      wrong=["return max(range(len(nums)), key=lambda i: nums[i]) if nums else 0"]),
    t("lists", "count_occurrences(items: list, x) -> int",
      "Return how many elements of items are equal to x.",
      [("[1, 2, 1, 3], 1", "2"), ("['a'], 'b'", "0")],
      "return items.count(x)",
      ["[], 1", "[0, 0, 0], 0", "[1, 2, 3], 3", "['x', 'X'], 'x'", "[None, None], None"], level="very easy"),
    t("lists", "all_positive(nums: list[int]) -> bool",
      "Return True if every number in nums is greater than zero (True for an empty list).",
      [("[1, 2, 3]", "True"), ("[1, 0, 3]", "False")],
      "return all(n > 0 for n in nums)",
      ["[]", "[5]", "[-1]", "[0]", "[3, 4, -5]", "[100, 1]"]),
    t("lists", "contains_zero(nums: list[int]) -> bool",
      "Return True if any number in nums is zero.",
      [("[1, 0, 2]", "True"), ("[1, 2]", "False")],
      "return 0 in nums",
      ["[]", "[0]", "[-1, 1]", "[5, 6, 0]", "[10]"], level="very easy"),
    t("lists", "pairwise_sum(a: list[int], b: list[int]) -> list[int]",
      "Return the element-wise sums of two lists of the same length.",
      [("[1, 2], [3, 4]", "[4, 6]"), ("[], []", "[]")],
      "return [x + y for x, y in zip(a, b)]",
      ["[0], [0]", "[-1, 1], [1, -1]", "[1, 2, 3], [10, 20, 30]", "[5], [-9]", "[2, 2], [2, 2]"]),
    t("lists", "last_n(items: list, n: int) -> list",
      "Return the last n elements of items (all of them if there are fewer; none if n is 0).",
      [("[1, 2, 3, 4], 2", "[3, 4]"), ("[1, 2, 3], 0", "[]")],
      "return items[len(items) - n:] if n > 0 else []",
      ["[], 2", "[1], 1", "[1, 2], 5", "['a', 'b', 'c'], 1", "[5, 6, 7], 3"],
      wrong=["return items[-n:]"]),
    t("lists", "chunk(items: list, size: int) -> list[list]",
      "Split items into consecutive chunks of length size; the last chunk may be shorter.",
      [("[1, 2, 3, 4, 5], 2", "[[1, 2], [3, 4], [5]]"), ("[1, 2], 5", "[[1, 2]]")],
      "return [items[i:i + size] for i in range(0, len(items), size)]",
      ["[], 3", "[1, 2, 3], 1", "[1, 2, 3, 4], 2", "['a', 'b', 'c'], 3", "[1, 2, 3, 4, 5, 6, 7], 3"],
      level="medium"),
    t("lists", "rotate_list_left(items: list, k: int) -> list",
      "Return items rotated k places to the left (k may exceed the length); an empty list stays empty.",
      [("[1, 2, 3, 4], 1", "[2, 3, 4, 1]"), ("[1, 2, 3], 3", "[1, 2, 3]")],
      "if not items:\n    return []\nk %= len(items)\nreturn items[k:] + items[:k]",
      ["[], 2", "[1], 5", "[1, 2, 3], 0", "[1, 2, 3], 4", "[1, 2, 3, 4, 5], 2"], level="medium",
      wrong=["return items[k:] + items[:k]"]),
    t("lists", "interleave(a: list, b: list) -> list",
      "Return a list taking elements from a and b alternately, starting with a; when one list runs "
      "out, the rest of the other follows.",
      [("[1, 2, 3], ['a', 'b', 'c']", "[1, 'a', 2, 'b', 3, 'c']"), ("[1], [2, 3, 4]", "[1, 2, 3, 4]")],
      "out = []\nfor i in range(max(len(a), len(b))):\n    if i < len(a):\n        out.append(a[i])\n"
      "    if i < len(b):\n        out.append(b[i])\nreturn out",
      ["[], []", "[1, 2], []", "[], [1]", "[1, 3, 5, 7], [2, 4]", "['x'], ['y']"], level="medium",
      wrong=["return [v for pair in zip(a, b) for v in pair]"]),
    t("lists", "every_other(items: list) -> list",
      "Return the elements of items at even indexes (0, 2, 4, ...).",
      [("[1, 2, 3, 4, 5]", "[1, 3, 5]"), ("['a', 'b']", "['a']")],
      "return items[::2]",
      ["[]", "[9]", "[1, 2]", "[0, 1, 0, 1, 0, 1]", "['p', 'q', 'r']"], level="very easy",
      wrong=["return items[1::2]"]),
    t("lists", "count_greater_than(nums: list[int], limit: int) -> int",
      "Return how many numbers in nums are strictly greater than limit.",
      [("[1, 5, 10], 4", "2"), ("[1, 2], 2", "0")],
      "return sum(1 for n in nums if n > limit)",
      ["[], 0", "[3, 3, 3], 3", "[3, 4], 3", "[-5, -1, 0], -2", "[100], 99"],
      wrong=["return sum(1 for n in nums if n >= limit)"]),
    t("lists", "indices_of(items: list, x) -> list[int]",
      "Return the indexes at which x occurs in items, in increasing order.",
      [("[1, 2, 1, 3], 1", "[0, 2]"), ("[5, 6], 7", "[]")],
      "return [i for i, v in enumerate(items) if v == x]",
      ["[], 1", "[0, 0, 0], 0", "['a', 'b', 'a'], 'b'", "[1, 2, 3], 3", "[2, 1, 2, 1], 2"]),
    t("lists", "sum_of_squares(nums: list[int]) -> int",
      "Return the sum of the squares of the numbers in nums.",
      [("[1, 2, 3]", "14"), ("[]", "0")],
      "return sum(n * n for n in nums)",
      ["[0]", "[-3]", "[-1, 1]", "[10, 0, 2]", "[5, 5]"], level="very easy",
      wrong=["return sum(nums) ** 2"]),
    t("lists", "is_sorted(nums: list[int]) -> bool",
      "Return True if nums is in non-decreasing order (equal neighbours are allowed).",
      [("[1, 2, 2, 5]", "True"), ("[3, 1]", "False")],
      "return all(nums[i] <= nums[i + 1] for i in range(len(nums) - 1))",
      ["[]", "[1]", "[5, 5, 5]", "[1, 3, 2]", "[-3, -2, 0]", "[2, 1, 3]"],
      wrong=["return all(nums[i] < nums[i + 1] for i in range(len(nums) - 1))"]),
    t("lists", "unique_sorted(nums: list[int]) -> list[int]",
      "Return the distinct numbers of nums in increasing order.",
      [("[3, 1, 3, 2]", "[1, 2, 3]"), ("[]", "[]")],
      "return sorted(set(nums))",
      ["[1]", "[5, 5, 5]", "[-1, 2, -1, 0]", "[9, 8, 7]", "[0, 0, 1, 1]"]),
    t("lists", "remove_first(items: list, x) -> list",
      "Return a copy of items without the first occurrence of x (unchanged if x is absent).",
      [("[1, 2, 1], 1", "[2, 1]"), ("[1, 2], 3", "[1, 2]")],
      "out = list(items)\nif x in out:\n    out.remove(x)\nreturn out",
      ["[], 1", "[1], 1", "[2, 2, 2], 2", "['a', 'b', 'a'], 'b'", "[1, 2, 3, 1], 1"],
      wrong=["return [v for v in items if v != x]"]),
    t("lists", "max_adjacent_sum(nums: list[int]) -> int",
      "Return the largest sum of two neighbouring numbers in nums (nums has at least two numbers).",
      [("[1, 5, 2, 6]", "8"), ("[3, 4]", "7")],
      "return max(nums[i] + nums[i + 1] for i in range(len(nums) - 1))",
      ["[0, 0]", "[-5, -1, -7]", "[10, -20, 5, 5]", "[1, 2, 3, 4, 5]", "[9, 1, 1, 9]"], level="medium",
      wrong=["s = sorted(nums)\nreturn s[-1] + s[-2]"]),
    t("lists", "count_long_words(words: list[str], n: int) -> int",
      "Return how many strings in words are longer than n characters.",
      [("['a', 'abcd', 'abc'], 2", "2"), ("[], 1", "0")],
      "return sum(1 for w in words if len(w) > n)",
      ["['', 'a'], 0", "['abc'], 3", "['abcd'], 3", "['hello', 'hi', 'hey'], 2", "['x', 'y'], 5"]),
    t("lists", "multiply_all(nums: list[int], k: int) -> list[int]",
      "Return a list with every number of nums multiplied by k.",
      [("[1, 2, 3], 2", "[2, 4, 6]"), ("[], 5", "[]")],
      "return [n * k for n in nums]",
      ["[1], 0", "[-1, 2], -3", "[0, 0], 9", "[5, 10], 1", "[7, -7], 2"], level="very easy"),
    t("lists", "differences(nums: list[int]) -> list[int]",
      "Return the differences between neighbours: element i is nums[i + 1] - nums[i].",
      [("[1, 4, 9]", "[3, 5]"), ("[5]", "[]")],
      "return [nums[i + 1] - nums[i] for i in range(len(nums) - 1)]",
      ["[]", "[2, 2]", "[10, 7, 3]", "[-1, 1, -1]", "[0, 5, 5, 10]"],
      wrong=["return [nums[i] - nums[i + 1] for i in range(len(nums) - 1)]"]),
    t("lists", "clamp_all(nums: list[int], low: int, high: int) -> list[int]",
      "Return nums with every number below low raised to low and every number above high lowered "
      "to high.",
      [("[1, 5, 10], 2, 8", "[2, 5, 8]"), ("[], 0, 1", "[]")],
      "return [min(max(n, low), high) for n in nums]",
      ["[0], 0, 0", "[-5, 5], -1, 1", "[3, 4, 5], 4, 4", "[100, -100, 50], 0, 60", "[2, 3], 1, 9"]),
    t("lists", "median(nums: list[int]) -> float",
      "Return the median of a non-empty list: the middle value of the sorted numbers, or the mean of "
      "the two middle values when the count is even.",
      [("[3, 1, 2]", "2"), ("[4, 1, 3, 2]", "2.5")],
      "s = sorted(nums)\nmid = len(s) // 2\nif len(s) % 2:\n    return s[mid]\n"
      "return (s[mid - 1] + s[mid]) / 2",
      ["[7]", "[1, 2]", "[5, 3, 1, 4, 2]", "[-1, -3, -2, -4]", "[10, 10, 20, 20]", "[0, 100]"],
      level="medium", wrong=["s = sorted(nums)\nreturn s[len(s) // 2]"]),
    t("lists", "move_zeros_to_end(nums: list[int]) -> list[int]",
      "Return nums with all zeros moved to the end, keeping the order of the other numbers.",
      [("[0, 1, 0, 3]", "[1, 3, 0, 0]"), ("[1, 2]", "[1, 2]")],
      "return [n for n in nums if n != 0] + [n for n in nums if n == 0]",
      ["[]", "[0]", "[0, 0, 1]", "[3, 0, 2, 0, 1]", "[-1, 0, -2]"],
      wrong=["return sorted(nums, reverse=True)"]),
    t("lists", "count_in_range(nums: list[int], low: int, high: int) -> int",
      "Return how many numbers in nums lie between low and high, both included.",
      [("[1, 5, 10], 1, 5", "2"), ("[], 0, 9", "0")],
      "return sum(1 for n in nums if low <= n <= high)",
      ["[0], 0, 0", "[1, 2, 3], 4, 9", "[-3, -2, -1], -2, -1", "[5, 5, 6], 5, 5", "[10, 1], 2, 9"],
      wrong=["return sum(1 for n in nums if low < n < high)"]),
    t("lists", "second_smallest(nums: list[int]) -> int",
      "Return the second smallest distinct number in nums, or None if there is no such number.",
      [("[4, 1, 3]", "3"), ("[2, 2, 5]", "5")],
      "values = sorted(set(nums))\nreturn values[1] if len(values) > 1 else None",
      ["[]", "[1]", "[2, 2]", "[1, 1, 2]", "[-5, -5, -1, 0]", "[9, 8, 7, 6]"], level="medium",
      wrong=["s = sorted(nums)\nreturn s[1] if len(s) > 1 else None"]),
    t("lists", "sum_first_last(nums: list[int]) -> int",
      "Return the sum of the first and the last number of nums (twice the number if there is only "
      "one), or 0 if nums is empty.",
      [("[1, 2, 3]", "4"), ("[5]", "10")],
      "return nums[0] + nums[-1] if nums else 0",
      ["[]", "[1, 9]", "[-1, 100, 1]", "[0, 0, 0]", "[3, 4, 5, 6]"]),

    # math ----------------------------------------------------------------------------------------
    t("math", "cube(n: int) -> int",
      "Return n to the power of three.",
      [("2", "8"), ("-3", "-27")],
      "return n ** 3",
      ["0", "1", "-1", "10", "5"], level="very easy", wrong=["return n * n"]),
    t("math", "is_odd(n: int) -> bool",
      "Return True if n is odd, else False.",
      [("3", "True"), ("4", "False")],
      "return n % 2 == 1",
      ["0", "1", "-1", "-2", "101", "1000"], level="very easy"),
    t("math", "sign(n: int) -> int",
      "Return 1 if n is positive, -1 if n is negative and 0 if n is zero.",
      [("5", "1"), ("-2", "-1")],
      "return (n > 0) - (n < 0)",
      ["0", "1", "-1", "1000", "-999"]),
    t("math", "is_multiple(n: int, k: int) -> bool",
      "Return True if n is a multiple of k (k is never zero).",
      [("10, 5", "True"), ("7, 2", "False")],
      "return n % k == 0",
      ["0, 3", "3, 3", "-9, 3", "9, -3", "10, 3", "1, 1"], level="very easy"),
    t("math", "count_digits(n: int) -> int",
      "Return how many decimal digits n has (the sign does not count; 0 has one digit).",
      [("12345", "5"), ("0", "1")],
      "return len(str(abs(n)))",
      ["7", "-12", "10", "1000000", "-9"], wrong=["return len(str(n))"]),
    t("math", "reverse_number(n: int) -> int",
      "Return the number made of the digits of the non-negative number n in reverse order.",
      [("123", "321"), ("120", "21")],
      "return int(str(n)[::-1])",
      ["0", "7", "100", "1221", "908"]),
    t("math", "power(base: int, exp: int) -> int",
      "Return base raised to the non-negative power exp.",
      [("2, 10", "1024"), ("5, 0", "1")],
      "return base ** exp",
      ["0, 0", "0, 5", "-2, 3", "-2, 2", "7, 1", "10, 3"], level="very easy",
      wrong=["return base * exp"]),
    t("math", "is_pythagorean(a: int, b: int, c: int) -> bool",
      "Return True if a*a + b*b == c*c.",
      [("3, 4, 5", "True"), ("1, 2, 3", "False")],
      "return a * a + b * b == c * c",
      ["0, 0, 0", "5, 12, 13", "4, 3, 5", "5, 4, 3", "6, 8, 10", "2, 2, 3"]),
    t("math", "lcm(a: int, b: int) -> int",
      "Return the least common multiple of two positive numbers.",
      [("4, 6", "12"), ("3, 5", "15")],
      "x, y = a, b\nwhile y:\n    x, y = y, x % y\nreturn a * b // x",
      ["1, 1", "7, 7", "2, 8", "12, 18", "9, 1", "21, 6"], level="medium", wrong=["return a * b"]),
    t("math", "sum_multiples_3_or_5(n: int) -> int",
      "Return the sum of all natural numbers below n that are multiples of 3 or 5.",
      [("10", "23"), ("1", "0")],
      "return sum(i for i in range(n) if i % 3 == 0 or i % 5 == 0)",
      ["0", "4", "6", "16", "20", "100"], level="medium",
      wrong=["return sum(i for i in range(n + 1) if i % 3 == 0 or i % 5 == 0)"]),
    t("math", "triangle_number(n: int) -> int",
      "Return 1 + 2 + ... + n, or 0 if n is zero or negative.",
      [("4", "10"), ("0", "0")],
      "return n * (n + 1) // 2 if n > 0 else 0",
      ["1", "2", "-3", "10", "100"], wrong=["return n * (n - 1) // 2"]),
    t("math", "is_perfect_square(n: int) -> bool",
      "Return True if n is the square of a whole number (negative numbers never are).",
      [("16", "True"), ("15", "False")],
      "if n < 0:\n    return False\nr = int(n ** 0.5)\nwhile r * r > n:\n    r -= 1\n"
      "while (r + 1) * (r + 1) <= n:\n"
      "    r += 1\nreturn r * r == n",
      ["0", "1", "2", "-4", "25", "26", "10000"], level="medium"),
    t("math", "count_divisors(n: int) -> int",
      "Return how many positive numbers divide the positive number n evenly.",
      [("6", "4"), ("7", "2")],
      "return sum(1 for d in range(1, n + 1) if n % d == 0)",
      ["1", "2", "12", "16", "100", "97"],
      wrong=["return sum(1 for d in range(1, n) if n % d == 0)"]),
    t("math", "min_of_three(a: int, b: int, c: int) -> int",
      "Return the smallest of the three numbers.",
      [("3, 1, 2", "1"), ("5, 5, 9", "5")],
      "return min(a, b, c)",
      ["0, 0, 0", "-1, -2, -3", "1, 2, 3", "2, 3, 1", "7, -7, 0"], level="very easy"),
    t("math", "max_of_three(a: int, b: int, c: int) -> int",
      "Return the largest of the three numbers.",
      [("3, 1, 2", "3"), ("-5, -5, -9", "-5")],
      "return max(a, b, c)",
      ["0, 0, 0", "-1, -2, -3", "1, 2, 3", "2, 3, 1", "7, -7, 0"], level="very easy"),
    t("math", "divide_with_remainder(a: int, b: int) -> tuple[int, int]",
      "Return a tuple (quotient, remainder) of the whole-number division of a by the positive number b.",
      [("17, 5", "(3, 2)"), ("10, 2", "(5, 0)")],
      "return (a // b, a % b)",
      ["0, 3", "2, 5", "-7, 2", "100, 1", "99, 10"]),
    t("math", "is_between(x: int, low: int, high: int) -> bool",
      "Return True if low <= x <= high.",
      [("5, 1, 10", "True"), ("0, 1, 10", "False")],
      "return low <= x <= high",
      ["1, 1, 10", "10, 1, 10", "11, 1, 10", "-3, -5, -1", "0, 0, 0", "2, 3, 1"], level="very easy",
      wrong=["return low < x < high"]),
    t("math", "kilometers_to_meters(km: int) -> int",
      "Return the number of meters in km kilometers.",
      [("3", "3000"), ("0", "0")],
      "return km * 1000",
      ["1", "12", "-2", "250", "7"], level="very easy"),
    t("math", "collatz_steps(n: int) -> int",
      "Return how many steps the Collatz rule (halve an even number, replace an odd one by 3n + 1) "
      "takes to bring the positive number n to 1.",
      [("6", "8"), ("1", "0")],
      "steps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1\nreturn steps",
      ["2", "3", "7", "16", "27"], level="medium"),
    t("math", "is_power_of_two(n: int) -> bool",
      "Return True if n is a power of two (1, 2, 4, 8, ...).",
      [("8", "True"), ("6", "False")],
      "return n > 0 and n & (n - 1) == 0",
      ["0", "1", "2", "-4", "1024", "1000"], level="medium"),
    t("math", "sum_range(a: int, b: int) -> int",
      "Return the sum of all whole numbers from a to b, both included (0 if a > b).",
      [("1, 4", "10"), ("5, 5", "5")],
      "return sum(range(a, b + 1))",
      ["3, 1", "-2, 2", "0, 0", "-5, -3", "10, 20"], wrong=["return sum(range(a, b))"]),
    t("math", "round_to_ten(n: int) -> int",
      "Round the non-negative number n to the nearest multiple of ten (a 5 in the ones place rounds "
      "up).",
      [("14", "10"), ("15", "20")],
      "return (n + 5) // 10 * 10",
      ["0", "4", "5", "95", "101", "50"], level="medium", wrong=["return round(n, -1)"]),
    t("math", "digits_of(n: int) -> list[int]",
      "Return the decimal digits of the non-negative number n as a list, most significant first.",
      [("123", "[1, 2, 3]"), ("0", "[0]")],
      "return [int(c) for c in str(n)]",
      ["7", "10", "9081", "1000", "55"]),
    t("math", "last_digit(n: int) -> int",
      "Return the last decimal digit of n (of its absolute value if n is negative).",
      [("123", "3"), ("-47", "7")],
      "return abs(n) % 10",
      ["0", "10", "-1", "5", "99999"], level="very easy", wrong=["return n % 10"]),
    t("math", "sum_of_cubes(n: int) -> int",
      "Return 1**3 + 2**3 + ... + n**3 (0 when n is 0).",
      [("3", "36"), ("1", "1")],
      "return sum(i ** 3 for i in range(1, n + 1))",
      ["0", "2", "4", "10", "5"]),
    t("math", "int_sqrt(n: int) -> int",
      "Return the largest whole number whose square is at most the non-negative number n.",
      [("10", "3"), ("16", "4")],
      "r = 0\nwhile (r + 1) * (r + 1) <= n:\n    r += 1\nreturn r",
      ["0", "1", "2", "15", "99", "100"], level="medium"),
    t("math", "count_set_bits(n: int) -> int",
      "Return how many 1 bits the binary representation of the non-negative number n has.",
      [("5", "2"), ("8", "1")],
      "return bin(n).count('1')",
      ["0", "1", "7", "255", "1024", "6"]),
    t("math", "is_odd_and_positive(n: int) -> bool",
      "Return True if n is both odd and greater than zero.",
      [("3", "True"), ("-3", "False")],
      "return n > 0 and n % 2 == 1",
      ["0", "1", "2", "-1", "99", "100"]),
    t("math", "half_or_triple(n: int) -> int",
      "Return n // 2 if n is even, otherwise 3 * n.",
      [("10", "5"), ("3", "9")],
      "return n // 2 if n % 2 == 0 else 3 * n",
      ["0", "1", "-4", "-3", "100", "7"]),
    t("math", "absolute_difference(a: int, b: int) -> int",
      "Return the absolute value of the difference between a and b.",
      [("3, 10", "7"), ("10, 3", "7")],
      "return abs(a - b)",
      ["0, 0", "-5, 5", "5, -5", "-3, -8", "100, 1"], level="very easy", wrong=["return a - b"]),

    # dicts ---------------------------------------------------------------------------------------
    t("dicts", "get_or_default(d: dict, key, default)",
      "Return d[key] if key is in d, otherwise default.",
      [("{'a': 1}, 'a', 0", "1"), ("{'a': 1}, 'b', 0", "0")],
      "return d.get(key, default)",
      ["{}, 'x', None", "{'x': None}, 'x', 5", "{1: 'one'}, 1, ''", "{1: 'one'}, 2, 'none'",
       "{'k': 0}, 'k', 99"], level="very easy"),
    t("dicts", "count_keys(d: dict) -> int",
      "Return how many keys d has.",
      [("{'a': 1, 'b': 2}", "2"), ("{}", "0")],
      "return len(d)",
      ["{1: 1}", "{'x': [], 'y': [], 'z': []}", "{None: None}", "{i: i for i in range(10)}",
       "{'a': {'b': 1}}"], level="very easy"),
    t("dicts", "invert_dict(d: dict) -> dict",
      "Return a new dict that maps each value of d to its key (the values are all different).",
      [("{'a': 1, 'b': 2}", "{1: 'a', 2: 'b'}"), ("{}", "{}")],
      "return {v: k for k, v in d.items()}",
      ["{'x': 'y'}", "{1: 2, 2: 1}", "{0: 'zero'}", "{'one': 1, 'two': 2, 'three': 3}", "{True: False}"]),
    t("dicts", "sum_values(d: dict[str, int]) -> int",
      "Return the sum of the values of d.",
      [("{'a': 1, 'b': 2}", "3"), ("{}", "0")],
      "return sum(d.values())",
      ["{'x': 0}", "{'x': -5, 'y': 5}", "{'a': 10, 'b': 20, 'c': 30}", "{'n': -7}", "{'q': 100}"],
      level="very easy", wrong=["return len(d)"]),
    t("dicts", "key_with_max_value(d: dict[str, int]) -> str",
      "Return the key whose value is largest (the first such key in d's order), or None if d is empty.",
      [("{'a': 1, 'b': 5, 'c': 3}", "'b'"), ("{'x': 2, 'y': 2}", "'x'")],
      "best = None\nfor k, v in d.items():\n    if best is None or v > d[best]:\n        best = k\n"
      "return best",
      ["{}", "{'x': 0}", "{'a': 2, 'b': 2}", "{'a': -5, 'b': -1}", "{'z': 1, 'a': 9}",
       "{'p': 3, 'q': 7, 'r': 7}"],
      wrong=["return max(d) if d else None"]),
    t("dicts", "merge_dicts(a: dict, b: dict) -> dict",
      "Return a new dict with the entries of a and b; where both have a key, b's value wins.",
      [("{'x': 1}, {'y': 2}", "{'x': 1, 'y': 2}"), ("{'x': 1}, {'x': 3}", "{'x': 3}")],
      "out = dict(a)\nout.update(b)\nreturn out",
      ["{}, {}", "{'a': 1}, {}", "{}, {'b': 2}", "{'k': 1, 'j': 2}, {'k': 0}", "{1: 'a'}, {2: 'b', 1: 'c'}"],
      wrong=["out = dict(b)\nout.update(a)\nreturn out"]),
    t("dicts", "sorted_keys(d: dict) -> list",
      "Return the keys of d in increasing order.",
      [("{'b': 1, 'a': 2}", "['a', 'b']"), ("{}", "[]")],
      "return sorted(d)",
      ["{3: 'c', 1: 'a', 2: 'b'}", "{'z': 0}", "{'apple': 1, 'Apple': 2}", "{-1: 0, 0: 0}",
       "{'b': 2, 'c': 3}"],
      level="very easy"),
    t("dicts", "filter_by_value(d: dict[str, int], threshold: int) -> dict[str, int]",
      "Return a new dict with only the entries of d whose value is greater than threshold.",
      [("{'a': 1, 'b': 5}, 2", "{'b': 5}"), ("{}, 0", "{}")],
      "return {k: v for k, v in d.items() if v > threshold}",
      ["{'a': 2}, 2", "{'a': 3}, 2", "{'x': -1, 'y': 0, 'z': 1}, -1", "{'p': 10, 'q': 20}, 100",
       "{'m': 5, 'n': 6}, 0"], wrong=["return {k: v for k, v in d.items() if v >= threshold}"]),
    t("dicts", "word_lengths(words: list[str]) -> dict[str, int]",
      "Return a dict mapping each word to its length.",
      [("['hi', 'hello']", "{'hi': 2, 'hello': 5}"), ("[]", "{}")],
      "return {w: len(w) for w in words}",
      ["['']", "['a', 'a']", "['abc', 'de', 'f']", "['same', 'size']", "['longerword']"]),
    t("dicts", "word_frequencies(s: str) -> dict[str, int]",
      "Return a dict mapping each word of s (split on whitespace) to how many times it occurs.",
      [("'a b a'", "{'a': 2, 'b': 1}"), ("''", "{}")],
      "counts = {}\nfor w in s.split():\n    counts[w] = counts.get(w, 0) + 1\nreturn counts",
      ["'one'", "'x x x'", "'The the THE'", "'  spaced   out  spaced '", "'a b c d'"], level="medium"),
    t("dicts", "has_key(d: dict, key) -> bool",
      "Return True if key is one of the keys of d.",
      [("{'a': 1}, 'a'", "True"), ("{'a': 1}, 1", "False")],
      "return key in d",
      ["{}, 'a'", "{None: 0}, None", "{'x': 'y'}, 'y'", "{1: 2, 3: 4}, 3",
       "{'A': 1}, 'a'"], level="very easy"),
    t("dicts", "dict_from_lists(keys: list, values: list) -> dict",
      "Return a dict pairing keys[i] with values[i] (the lists have the same length).",
      [("['a', 'b'], [1, 2]", "{'a': 1, 'b': 2}"), ("[], []", "{}")],
      "return dict(zip(keys, values))",
      ["['x'], [None]", "[1, 2, 3], ['one', 'two', 'three']", "['k', 'k'], [1, 2]", "['a'], [[1, 2]]",
       "[0, 1], [1, 0]"]),
    t("dicts", "increment_key(d: dict[str, int], key: str) -> dict[str, int]",
      "Return a copy of d where the value of key is one larger; a missing key starts from 0.",
      [("{'a': 1}, 'a'", "{'a': 2}"), ("{}, 'x'", "{'x': 1}")],
      "out = dict(d)\nout[key] = out.get(key, 0) + 1\nreturn out",
      ["{'a': 1}, 'b'", "{'a': -1}, 'a'", "{'a': 0, 'b': 0}, 'b'", "{'n': 99}, 'n'", "{}, ''"]),
    t("dicts", "group_by_length(words: list[str]) -> dict[int, list[str]]",
      "Return a dict mapping each word length to the list of words of that length, in their original "
      "order.",
      [("['a', 'bb', 'c']", "{1: ['a', 'c'], 2: ['bb']}"), ("[]", "{}")],
      "groups = {}\nfor w in words:\n    groups.setdefault(len(w), []).append(w)\nreturn groups",
      ["['']", "['x', 'x']", "['abc', 'de', 'fgh', 'i']", "['one', 'two', 'three']", "['aaaa']"],
      level="medium"),
    t("dicts", "sorted_values(d: dict[str, int]) -> list[int]",
      "Return the values of d sorted in increasing order.",
      [("{'a': 3, 'b': 1}", "[1, 3]"), ("{}", "[]")],
      "return sorted(d.values())",
      ["{'x': 0}", "{'a': 2, 'b': 2}", "{'a': -1, 'b': -5, 'c': 3}", "{'z': 1, 'y': 2, 'x': 3}",
       "{'m': 10, 'n': 9}"], wrong=["return list(d.values())"]),
    t("dicts", "squares_dict(n: int) -> dict[int, int]",
      "Return a dict mapping each number from 1 to n to its square (empty when n is below 1).",
      [("3", "{1: 1, 2: 4, 3: 9}"), ("0", "{}")],
      "return {i: i * i for i in range(1, n + 1)}",
      ["1", "2", "-1", "5", "4"], wrong=["return {i: i * i for i in range(n)}"]),
    t("dicts", "common_keys(a: dict, b: dict) -> list",
      "Return the keys present in both a and b, in increasing order.",
      [("{'x': 1, 'y': 2}, {'y': 3, 'z': 4}", "['y']"), ("{}, {'a': 1}", "[]")],
      "return sorted(k for k in a if k in b)",
      ["{}, {}", "{'a': 1}, {'a': 2}", "{'c': 1, 'b': 2, 'a': 3}, {'a': 0, 'c': 0}", "{1: 1}, {2: 2}",
       "{'k': 1, 'j': 1}, {'j': 1, 'k': 1, 'l': 1}"]),
    t("dicts", "lookup_all(d: dict, keys: list) -> list",
      "Return the values of d for each key in keys, in order, with None for keys that are missing.",
      [("{'a': 1, 'b': 2}, ['b', 'a']", "[2, 1]"), ("{'a': 1}, ['c']", "[None]")],
      "return [d.get(k) for k in keys]",
      ["{}, []", "{}, ['a']", "{'a': 1}, ['a', 'a']", "{1: 'x', 2: 'y'}, [2, 3, 1]", "{'k': 0}, ['k']"]),
    t("dicts", "dict_to_pairs(d: dict) -> list[tuple]",
      "Return the (key, value) pairs of d as a list of tuples sorted by key.",
      [("{'b': 2, 'a': 1}", "[('a', 1), ('b', 2)]"), ("{}", "[]")],
      "return sorted(d.items())",
      ["{'x': 0}", "{3: 'c', 1: 'a'}", "{'b': [1], 'a': [2]}", "{'z': 1, 'y': 1, 'x': 1}", "{0: 0}"]),
    t("dicts", "max_value(d: dict[str, int]) -> int",
      "Return the largest value in d, or None if d is empty.",
      [("{'a': 3, 'b': 7}", "7"), ("{'a': -2}", "-2")],
      "return max(d.values()) if d else None",
      ["{}", "{'a': 0}", "{'a': -3, 'b': -7}", "{'a': 5, 'b': 5}", "{'x': 1, 'y': 100, 'z': 50}",
       "{'q': -1}"]),
    t("dicts", "count_keys_starting_with(d: dict[str, int], letter: str) -> int",
      "Return how many keys of d start with the given letter.",
      [("{'apple': 1, 'avocado': 2, 'pear': 3}, 'a'", "2"), ("{}, 'a'", "0")],
      "return sum(1 for k in d if k.startswith(letter))",
      ["{'': 1}, 'a'", "{'Apple': 1}, 'a'", "{'b': 1, 'bb': 2}, 'b'", "{'xa': 1}, 'a'",
       "{'cat': 0, 'dog': 0}, 'd'"]),
    t("dicts", "keys_with_value(d: dict, value) -> int",
      "Return how many keys of d map to value.",
      [("{'a': 1, 'b': 2, 'c': 1}, 1", "2"), ("{}, 0", "0")],
      "return sum(1 for v in d.values() if v == value)",
      ["{'x': 0}, 0", "{'x': 0}, 1", "{'a': 'y', 'b': 'y'}, 'y'", "{1: None, 2: 3}, None", "{'k': 5}, 5"]),
    t("dicts", "all_values_positive(d: dict[str, int]) -> bool",
      "Return True if every value in d is greater than zero (True for an empty dict).",
      [("{'a': 1, 'b': 2}", "True"), ("{'a': 0}", "False")],
      "return all(v > 0 for v in d.values())",
      ["{}", "{'a': -1}", "{'x': 5, 'y': -5}", "{'z': 100}", "{'a': 1, 'b': 0}"]),
    t("dicts", "char_counts(s: str) -> dict[str, int]",
      "Return a dict mapping each character of s to how many times it occurs, in order of first "
      "appearance.",
      [("'abca'", "{'a': 2, 'b': 1, 'c': 1}"), ("''", "{}")],
      "counts = {}\nfor c in s:\n    counts[c] = counts.get(c, 0) + 1\nreturn counts",
      ["'a'", "'aaa'", "'Aa'", "'hello world'", "'112'"], level="medium"),

    # sets and tuples -----------------------------------------------------------------------------
    t("sets_tuples", "unique_count(items: list) -> int",
      "Return how many different values items contains.",
      [("[1, 2, 2, 3]", "3"), ("[]", "0")],
      "return len(set(items))",
      ["[1]", "[5, 5, 5, 5]", "['a', 'A']", "[0, -0, 1]", "[1, 2, 3, 4]"], level="very easy"),
    t("sets_tuples", "common_elements(a: list[int], b: list[int]) -> list[int]",
      "Return the values that occur in both a and b, without duplicates, in increasing order.",
      [("[1, 2, 3], [2, 3, 4]", "[2, 3]"), ("[1], [2]", "[]")],
      "return sorted(set(a) & set(b))",
      ["[], [1]", "[1, 1, 2], [1, 1]", "[5, 4, 3], [3, 4, 5]", "[-1, 0], [0, 1]", "[7], [7, 7, 7]"]),
    t("sets_tuples", "has_duplicates(items: list) -> bool",
      "Return True if some value occurs more than once in items.",
      [("[1, 2, 1]", "True"), ("[1, 2, 3]", "False")],
      "return len(set(items)) < len(items)",
      ["[]", "[1]", "[0, 0]", "['a', 'b', 'A']", "[1, 2, 3, 4, 1]", "[None, None]"]),
    t("sets_tuples", "symmetric_difference(a: list[int], b: list[int]) -> list[int]",
      "Return, in increasing order and without duplicates, the values that occur in exactly one of a "
      "and b.",
      [("[1, 2, 3], [2, 3, 4]", "[1, 4]"), ("[1], [1]", "[]")],
      "return sorted(set(a) ^ set(b))",
      ["[], []", "[1, 1], []", "[], [3, 2]", "[5, 6], [7, 8]", "[-1, 0, 1], [0]"], level="medium",
      wrong=["return sorted(set(a) - set(b))"]),
    t("sets_tuples", "is_subset(a: list, b: list) -> bool",
      "Return True if every value of a also occurs in b.",
      [("[1, 2], [1, 2, 3]", "True"), ("[1, 4], [1, 2, 3]", "False")],
      "return set(a) <= set(b)",
      ["[], []", "[], [1]", "[1], []", "[2, 2], [2]", "['a'], ['A']", "[3, 1], [1, 2, 3]"]),
    t("sets_tuples", "swap_pair(pair: tuple) -> tuple",
      "Return the two-element tuple pair with its elements swapped.",
      [("(1, 2)", "(2, 1)"), ("('a', 'b')", "('b', 'a')")],
      "return (pair[1], pair[0])",
      ["(0, 0)", "(None, 1)", "((1, 2), 3)", "('x', 5)", "(-1, 1)"], level="very easy"),
    t("sets_tuples", "min_and_max(nums: list[int]) -> tuple[int, int]",
      "Return a tuple (smallest, largest) of the non-empty list nums.",
      [("[3, 1, 4]", "(1, 4)"), ("[7]", "(7, 7)")],
      "return (min(nums), max(nums))",
      ["[0, 0]", "[-1, -5, -3]", "[10, 2, 10, 2]", "[100, -100]", "[1, 2, 3, 4]"],
      wrong=["return (max(nums), min(nums))"]),
    t("sets_tuples", "zip_pairs(a: list, b: list) -> list[tuple]",
      "Return the list of pairs (a[i], b[i]), stopping at the end of the shorter list.",
      [("[1, 2], ['x', 'y']", "[(1, 'x'), (2, 'y')]"), ("[1, 2, 3], [4]", "[(1, 4)]")],
      "return list(zip(a, b))",
      ["[], []", "[1], []", "[0, 0], [0, 0]", "['a'], ['b', 'c']", "[1, 2, 3], [3, 2, 1]"]),
    t("sets_tuples", "tuple_sum(values: tuple) -> int",
      "Return the sum of the numbers in the tuple values.",
      [("(1, 2, 3)", "6"), ("()", "0")],
      "return sum(values)",
      ["(5,)", "(-1, 1)", "(0, 0, 0)", "(10, 20, 30, 40)", "(-3, -4)"], level="very easy"),
    t("sets_tuples", "union_sorted(a: list[int], b: list[int]) -> list[int]",
      "Return the values that occur in a or in b, without duplicates, in increasing order.",
      [("[3, 1], [2, 3]", "[1, 2, 3]"), ("[], []", "[]")],
      "return sorted(set(a) | set(b))",
      ["[1], []", "[], [5, 5]", "[-1, -2], [-2, 0]", "[9, 8], [7, 6]", "[1, 2], [1, 2]"]),
    t("sets_tuples", "distinct_chars(s: str) -> int",
      "Return how many different characters s contains.",
      [("'hello'", "4"), ("''", "0")],
      "return len(set(s))",
      ["'a'", "'aaaa'", "'Aa'", "'abc abc'", "'112233'"], level="very easy", wrong=["return len(s)"]),
    t("sets_tuples", "first_and_last(items: list) -> tuple",
      "Return a tuple of the first and the last element of the non-empty list items.",
      [("[1, 2, 3]", "(1, 3)"), ("['x']", "('x', 'x')")],
      "return (items[0], items[-1])",
      ["[0, 1]", "[None, 2, None]", "[[1], [2]]", "['a', 'b', 'c', 'd']", "[5, 5]"], level="very easy"),
    t("sets_tuples", "unzip_pairs(pairs: list[tuple]) -> tuple[list, list]",
      "Split a list of pairs into a tuple of two lists: the first elements and the second elements.",
      [("[(1, 'a'), (2, 'b')]", "([1, 2], ['a', 'b'])"), ("[]", "([], [])")],
      "return ([p[0] for p in pairs], [p[1] for p in pairs])",
      ["[(0, 0)]", "[(1, 2), (3, 4), (5, 6)]", "[('x', None)]", "[(-1, 1), (1, -1)]", "[(1, 1), (1, 1)]"],
      level="medium"),
    t("sets_tuples", "sort_by_second(pairs: list[tuple]) -> list[tuple]",
      "Return the pairs sorted by their second element (pairs with equal second elements keep their "
      "order).",
      [("[(1, 3), (2, 1), (3, 2)]", "[(2, 1), (3, 2), (1, 3)]"), ("[]", "[]")],
      "return sorted(pairs, key=lambda p: p[1])",
      ["[(1, 1)]", "[('a', 2), ('b', 2), ('c', 1)]", "[(5, -1), (6, -2)]", "[(3, 0), (1, 0)]",
       "[(1, 9), (2, 8), (3, 7)]"], level="medium", wrong=["return sorted(pairs)"]),
    t("sets_tuples", "remove_duplicates_sorted_desc(nums: list[int]) -> list[int]",
      "Return the distinct values of nums in decreasing order.",
      [("[1, 3, 2, 3]", "[3, 2, 1]"), ("[]", "[]")],
      "return sorted(set(nums), reverse=True)",
      ["[5]", "[1, 1, 1]", "[-1, -2, -1]", "[0, 10, 5]", "[4, 3, 2, 1]"]),

    # simple algorithms ---------------------------------------------------------------------------
    t("algorithms", "linear_search(items: list, x) -> int",
      "Return the index of the first element of items equal to x, or -1 if there is none.",
      [("[4, 2, 7], 7", "2"), ("[1, 2], 5", "-1")],
      "for i, v in enumerate(items):\n    if v == x:\n        return i\nreturn -1",
      ["[], 1", "[3, 3, 3], 3", "['a', 'b'], 'b'", "[0], 0", "[1, 2, 3, 2], 2"]),
    t("algorithms", "binary_search(nums: list[int], target: int) -> int",
      "Return an index of target in the increasing list nums, or -1 if target is not in it.",
      [("[1, 3, 5, 7], 5", "2"), ("[1, 3, 5], 4", "-1")],
      "lo, hi = 0, len(nums) - 1\nwhile lo <= hi:\n    mid = (lo + hi) // 2\n    if nums[mid] == target:\n"
      "        return mid\n    if nums[mid] < target:\n        lo = mid + 1\n    else:\n"
      "        hi = mid - 1\n"
      "return -1",
      ["[], 1", "[2], 2", "[2], 3", "[1, 2, 3, 4, 5, 6], 1", "[1, 2, 3, 4, 5, 6], 6", "[-5, 0, 5], 0"],
      level="medium"),
    t("algorithms", "sort_descending(nums: list[int]) -> list[int]",
      "Return the numbers of nums sorted from largest to smallest.",
      [("[3, 1, 2]", "[3, 2, 1]"), ("[]", "[]")],
      "return sorted(nums, reverse=True)",
      ["[1]", "[2, 2, 1]", "[-1, 5, 0]", "[1, 2, 3, 4]", "[10, -10, 10]"], level="very easy"),
    t("algorithms", "primes_below(n: int) -> list[int]",
      "Return the prime numbers smaller than n, in increasing order.",
      [("10", "[2, 3, 5, 7]"), ("2", "[]")],
      "return [p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]",
      ["0", "3", "20", "30", "-5"], level="medium",
      wrong=["return [p for p in range(2, n + 1) if all(p % d for d in range(2, p))]"]),
    t("algorithms", "fibonacci_list(n: int) -> list[int]",
      "Return the first n Fibonacci numbers, starting 0, 1, 1, 2, ...",
      [("5", "[0, 1, 1, 2, 3]"), ("1", "[0]")],
      "out = []\na, b = 0, 1\nfor _ in range(n):\n    out.append(a)\n    a, b = b, a + b\nreturn out",
      ["0", "2", "3", "8", "10"], level="medium"),
    t("algorithms", "caesar_shift(s: str, k: int) -> str",
      "Shift every lowercase letter of s forward by k places in the alphabet, wrapping from 'z' to "
      "'a'; other characters stay as they are.",
      [("'abc', 1", "'bcd'"), ("'xyz', 2", "'zab'")],
      "return ''.join(chr((ord(c) - 97 + k) % 26 + 97) if 'a' <= c <= 'z' else c for c in s)",
      ["'', 3", "'hello world', 0", "'hello, world!', 13", "'a', 26", "'Abc', 1", "'z', 27"], level="medium"),
    t("algorithms", "balanced_parens(s: str) -> bool",
      "Return True if the parentheses '(' and ')' in s are balanced: every '(' is closed later and no "
      "')' comes before its '('.",
      [("'(())'", "True"), ("')('", "False")],
      "depth = 0\nfor c in s:\n    if c == '(':\n        depth += 1\n    elif c == ')':\n        depth -= 1\n"
      "        if depth < 0:\n            return False\nreturn depth == 0",
      ["''", "'()()'", "'(()'", "'())('", "'(a(b)c)'", "'))(('"], level="medium",
      wrong=["return s.count('(') == s.count(')')"]),
    t("algorithms", "two_sum_exists(nums: list[int], target: int) -> bool",
      "Return True if two numbers at different positions in nums add up to target.",
      [("[1, 4, 6], 10", "True"), ("[1, 2], 5", "False")],
      "seen = set()\nfor n in nums:\n    if target - n in seen:\n        return True\n    seen.add(n)\n"
      "return False",
      ["[], 0", "[5], 10", "[5, 5], 10", "[-1, 1], 0", "[3, 2, 4], 6", "[1, 2, 3], 7"], level="medium",
      wrong=["return any(target - n in nums for n in nums)"]),
    t("algorithms", "find_missing(nums: list[int]) -> int",
      "nums holds all numbers from 1 to n except one, in any order; return the missing number.",
      [("[1, 2, 4]", "3"), ("[2]", "1")],
      "n = len(nums) + 1\nreturn n * (n + 1) // 2 - sum(nums)",
      ["[]", "[1]", "[2, 3, 1, 5]", "[5, 4, 3, 2]", "[1, 2, 3, 4, 5, 6, 7, 9]"], level="medium"),
    t("algorithms", "digital_root(n: int) -> int",
      "Repeatedly replace the non-negative number n by the sum of its digits until one digit is left, "
      "and return that digit.",
      [("38", "2"), ("5", "5")],
      "while n >= 10:\n    n = sum(int(c) for c in str(n))\nreturn n",
      ["0", "10", "99", "12345", "999999999"], level="medium",
      wrong=["return sum(int(c) for c in str(n))"]),
    t("algorithms", "from_binary(bits: str) -> int",
      "Return the value of the non-empty binary string bits (made of '0' and '1').",
      [("'101'", "5"), ("'0'", "0")],
      "value = 0\nfor c in bits:\n    value = value * 2 + int(c)\nreturn value",
      ["'1'", "'10'", "'1111'", "'100000'", "'0011'"]),
    t("algorithms", "most_frequent(nums: list[int]) -> int",
      "Return the value that occurs most often in the non-empty list nums; on a tie, the smallest "
      "such value.",
      [("[1, 2, 2, 3]", "2"), ("[3, 1]", "1")],
      "counts = {}\nfor n in nums:\n    counts[n] = counts.get(n, 0) + 1\n"
      "return min(counts, key=lambda v: (-counts[v], v))",
      ["[7]", "[5, 5, 4, 4]", "[-1, -1, 0]", "[1, 2, 3, 3, 2, 3]", "[9, 8, 7]"], level="medium",
      wrong=["return max(set(nums), key=nums.count)"]),
    t("algorithms", "pascal_row(n: int) -> list[int]",
      "Return row n of Pascal's triangle (row 0 is [1], row 1 is [1, 1]).",
      [("2", "[1, 2, 1]"), ("0", "[1]")],
      "row = [1]\nfor _ in range(n):\n"
      "    row = [1] + [row[i] + row[i + 1] for i in range(len(row) - 1)] + [1]\n"
      "return row",
      ["1", "3", "4", "6", "10"], level="medium"),
    t("algorithms", "bubble_pass(nums: list[int]) -> list[int]",
      "Return the list after one left-to-right bubble-sort pass: each neighbouring pair that is out of "
      "order is swapped once, in turn.",
      [("[3, 1, 2]", "[1, 2, 3]"), ("[2, 3, 1]", "[2, 1, 3]")],
      "out = list(nums)\nfor i in range(len(out) - 1):\n    if out[i] > out[i + 1]:\n"
      "        out[i], out[i + 1] = out[i + 1], out[i]\nreturn out",
      ["[]", "[1]", "[4, 3, 2, 1]", "[1, 2, 3]", "[5, 1, 4, 2, 8]"], level="medium",
      wrong=["return sorted(nums)"]),
    t("algorithms", "count_vowel_words(words: list[str]) -> int",
      "Return how many words in words start with a lowercase vowel (a, e, i, o, u).",
      [("['apple', 'tree', 'egg']", "2"), ("[]", "0")],
      "return sum(1 for w in words if w[:1] in ('a', 'e', 'i', 'o', 'u'))",
      ["['']", "['Apple']", "['umbrella', 'ice', 'owl']", "['sky', 'fly']", "['a', 'b', 'e']"]),
    t("algorithms", "gcd_of_list(nums: list[int]) -> int",
      "Return the greatest common divisor of the positive numbers in the non-empty list nums.",
      [("[12, 18, 24]", "6"), ("[7]", "7")],
      "result = 0\nfor n in nums:\n    a, b = result, n\n    while b:\n        a, b = b, a % b\n"
      "    result = a\n"
      "return result",
      ["[4, 6]", "[5, 7]", "[100, 10, 1000]", "[9, 9]", "[8, 12, 20]"], level="medium",
      wrong=["return min(nums)"]),
    t("algorithms", "running_max(nums: list[int]) -> list[int]",
      "Return a list whose element i is the largest of nums[0] through nums[i].",
      [("[1, 3, 2, 5]", "[1, 3, 3, 5]"), ("[]", "[]")],
      "out = []\nfor n in nums:\n    out.append(n if not out else max(out[-1], n))\nreturn out",
      ["[4]", "[5, 4, 3]", "[-3, -1, -2]", "[1, 1, 1]", "[2, 9, 3, 10, 1]"]),
]

# ---------------------------------------------------------------------------------------------------
# Eval split: tasks with no sibling in the training split.
# ---------------------------------------------------------------------------------------------------
EVAL = [
    # strings -------------------------------------------------------------------------------------
    t("strings", "is_pangram(s: str) -> bool",
      "Return True if s contains every letter of the English alphabet at least once, ignoring case.",
      [("'The quick brown fox jumps over the lazy dog'", "True"), ("'hello'", "False")],
      "return set('abcdefghijklmnopqrstuvwxyz') <= set(s.lower())",
      ["''", "'abcdefghijklmnopqrstuvwxyz'", "'ABCDEFGHIJKLMNOPQRSTUVWXYZ'", "'abcdefghijklmnopqrstuvwxy'",
       "'Pack my box with five dozen liquor jugs.'"], level="medium"),
    t("strings", "common_prefix(words: list[str]) -> str",
      "Return the longest string that every word in words starts with (an empty string for no words).",
      [("['flower', 'flow', 'flight']", "'fl'"), ("['dog', 'car']", "''")],
      "if not words:\n    return ''\nprefix = words[0]\nfor w in words[1:]:\n"
      "    while not w.startswith(prefix):\n"
      "        prefix = prefix[:-1]\nreturn prefix",
      ["[]", "['alone']", "['same', 'same']", "['', 'abc']", "['interview', 'internet', 'interval']",
       "['ab', 'a']"], level="medium"),
    t("strings", "ascii_total(s: str) -> int",
      "Return the sum of the character codes (ord) of the characters of s.",
      [("'AB'", "131"), ("''", "0")],
      "return sum(ord(c) for c in s)",
      ["'a'", "' '", "'abc'", "'Hello!'", "'0'"]),
    t("strings", "surround(s: str, ch: str) -> str",
      "Return s with the character ch added at both its start and its end.",
      [("'hi', '*'", "'*hi*'"), ("'', '-'", "'--'")],
      "return ch + s + ch",
      ["'a', 'b'", "'word', ' '", "'x', 'x'", "'mid dle', '|'", "'!', '?'"], level="very easy"),
    t("strings", "snake_to_camel(name: str) -> str",
      "Convert a snake_case name to camelCase: the first word stays lowercase and every later word "
      "starts with an uppercase letter.",
      [("'hello_world'", "'helloWorld'"), ("'get_user_id'", "'getUserId'")],
      "first, *rest = name.split('_')\nreturn first + ''.join(w.capitalize() for w in rest)",
      ["''", "'single'", "'a_b'", "'to_json_string'", "'x_y_z'"], level="medium"),
    t("strings", "is_valid_username(name: str) -> bool",
      "Return True if name is 3 to 12 characters long, starts with a letter, and contains only letters, "
      "digits and underscores.",
      [("'alice_99'", "True"), ("'9lives'", "False")],
      "return (3 <= len(name) <= 12 and name[0].isalpha()\n"
      "        and all(c.isalnum() or c == '_' for c in name))",
      ["''", "'ab'", "'abc'", "'abcdefghijkl'", "'abcdefghijklm'", "'bad name'", "'_under'", "'Ok_1'"],
      level="medium"),
    t("strings", "is_hex_color(s: str) -> bool",
      "Return True if s is '#' followed by exactly six hexadecimal digits (0-9, a-f, A-F).",
      [("'#1a2B3c'", "True"), ("'123456'", "False")],
      "return len(s) == 7 and s[0] == '#' and all(c in '0123456789abcdefABCDEF' for c in s[1:])",
      ["''", "'#'", "'#12345'", "'#1234567'", "'#ghijkl'", "'#FFFFFF'", "'#000000'"], level="medium"),
    t("strings", "format_name(first: str, last: str) -> str",
      "Return the name written as 'Last, First'.",
      [("'Ada', 'Lovelace'", "'Lovelace, Ada'"), ("'Alan', 'Turing'", "'Turing, Alan'")],
      "return last + ', ' + first",
      ["'', ''", "'A', 'B'", "'Grace', ''", "'Jean Luc', 'Picard'", "'x', 'y'"], level="very easy"),
    t("strings", "same_position_count(a: str, b: str) -> int",
      "Return at how many positions the strings a and b have the same character (compare up to the "
      "length of the shorter one).",
      [("'abcd', 'abzd'", "3"), ("'abc', 'xyz'", "0")],
      "return sum(1 for x, y in zip(a, b) if x == y)",
      ["'', 'abc'", "'a', 'a'", "'abc', 'abcdef'", "'aaaa', 'aa'", "'Hello', 'hello'"]),
    t("strings", "count_runs(s: str) -> int",
      "Return how many runs of equal neighbouring characters s has, e.g. 'aabccc' has the runs 'aa', "
      "'b' and 'ccc'.",
      [("'aabccc'", "3"), ("'abc'", "3")],
      "return sum(1 for i, c in enumerate(s) if i == 0 or s[i - 1] != c)",
      ["''", "'a'", "'aaaa'", "'abab'", "'aabbaa'", "'  x'"], level="medium"),
    t("strings", "greet(name: str) -> str",
      "Return the greeting 'Hello, <name>!' for name.",
      [("'Ada'", "'Hello, Ada!'"), ("'Bob'", "'Hello, Bob!'")],
      "return 'Hello, ' + name + '!'",
      ["''", "'x'", "'Mary Ann'", "'42'", "'hello'"], level="very easy"),
    t("strings", "digit_name(d: int) -> str",
      "Return the English word for the digit d (0 to 9), e.g. 3 -> 'three'.",
      [("3", "'three'"), ("0", "'zero'")],
      "return ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'][d]",
      ["1", "2", "5", "7", "9"], level="very easy"),

    # lists ---------------------------------------------------------------------------------------
    t("lists", "split_evens_odds(nums: list[int]) -> tuple[list[int], list[int]]",
      "Return a tuple (evens, odds): the even numbers and the odd numbers of nums, each in their "
      "original order.",
      [("[1, 2, 3, 4]", "([2, 4], [1, 3])"), ("[]", "([], [])")],
      "return ([n for n in nums if n % 2 == 0], [n for n in nums if n % 2 != 0])",
      ["[0]", "[1]", "[-1, -2]", "[5, 3, 1]", "[2, 4, 6, 7]"]),
    t("lists", "count_peaks(nums: list[int]) -> int",
      "Return how many elements of nums are strictly greater than both of their neighbours (the first "
      "and last elements are never counted).",
      [("[1, 3, 2, 4, 1]", "2"), ("[1, 2, 3]", "0")],
      "return sum(1 for i in range(1, len(nums) - 1) if nums[i - 1] < nums[i] > nums[i + 1])",
      ["[]", "[5]", "[1, 5]", "[1, 2, 2, 1]", "[0, 1, 0, 1, 0]", "[3, 1, 3]"], level="medium"),
    t("lists", "count_equal_neighbours(items: list) -> int",
      "Return how many positions i have items[i] == items[i + 1].",
      [("[1, 1, 2, 2, 2]", "3"), ("[1, 2, 3]", "0")],
      "return sum(1 for i in range(len(items) - 1) if items[i] == items[i + 1])",
      ["[]", "[1]", "[7, 7]", "['a', 'a', 'b', 'a']", "[0, 1, 0, 1]"]),
    t("lists", "longest_increasing_run(nums: list[int]) -> int",
      "Return the length of the longest block of consecutive elements of nums that is strictly "
      "increasing (0 for an empty list).",
      [("[1, 2, 3, 1, 2]", "3"), ("[5, 4, 3]", "1")],
      "best = cur = 0\nfor i, n in enumerate(nums):\n    cur = cur + 1 if i > 0 and nums[i - 1] < n else 1\n"
      "    best = max(best, cur)\nreturn best",
      ["[]", "[7]", "[1, 1, 1]", "[1, 2, 2, 3, 4]", "[-3, -2, -1, 0]", "[3, 1, 2, 3, 4, 0]"], level="medium"),
    t("lists", "alternating_sum(nums: list[int]) -> int",
      "Return nums[0] - nums[1] + nums[2] - nums[3] + ... (0 for an empty list).",
      [("[5, 3, 2]", "4"), ("[1, 1]", "0")],
      "return sum(n if i % 2 == 0 else -n for i, n in enumerate(nums))",
      ["[]", "[7]", "[1, 2, 3, 4]", "[-1, -1, -1]", "[10, 0, 10, 0]"]),
    t("lists", "split_in_half(items: list) -> tuple[list, list]",
      "Return a tuple of the first half and the second half of items; when the length is odd, the "
      "second half gets the extra element.",
      [("[1, 2, 3, 4]", "([1, 2], [3, 4])"), ("[1, 2, 3]", "([1], [2, 3])")],
      "mid = len(items) // 2\nreturn (items[:mid], items[mid:])",
      ["[]", "[1]", "[1, 2]", "['a', 'b', 'c', 'd', 'e']", "[0, 0, 0, 0, 0, 0]"]),
    t("lists", "index_weighted_sum(nums: list[int]) -> int",
      "Return the sum of i * nums[i] over all indexes i.",
      [("[5, 1, 2]", "5"), ("[]", "0")],
      "return sum(i * n for i, n in enumerate(nums))",
      ["[9]", "[0, 1]", "[1, 1, 1, 1]", "[-1, -2, -3]", "[3, 0, 0, 2]"]),
    t("lists", "total_length(words: list[str]) -> int",
      "Return the total number of characters in all the strings of words.",
      [("['ab', 'cde']", "5"), ("[]", "0")],
      "return sum(len(w) for w in words)",
      ["['']", "['a']", "['hello', 'world', '!']", "[' ', '  ']", "['x', 'yy', 'zzz']"], level="very easy"),
    t("lists", "nested_sum(rows: list[list[int]]) -> int",
      "Return the sum of all numbers in a list of lists of numbers.",
      [("[[1, 2], [3]]", "6"), ("[]", "0")],
      "return sum(sum(row) for row in rows)",
      ["[[]]", "[[5]]", "[[1, -1], [2, -2]]", "[[], [4], [], [6]]", "[[10, 20, 30], [40]]"]),
    t("lists", "pad_to_length(items: list, n: int, fill) -> list",
      "Return items extended with copies of fill until it has n elements (unchanged if it already has "
      "n or more).",
      [("[1, 2], 4, 0", "[1, 2, 0, 0]"), ("[1, 2, 3], 2, 0", "[1, 2, 3]")],
      "return list(items) + [fill] * (n - len(items))",
      ["[], 0, 1", "[], 3, 'x'", "[5], 1, 0", "[1], 2, None", "['a', 'b'], 5, '-'"]),

    # math ----------------------------------------------------------------------------------------
    t("math", "is_perfect_number(n: int) -> bool",
      "Return True if the positive number n equals the sum of its divisors smaller than itself "
      "(e.g. 6 = 1 + 2 + 3).",
      [("6", "True"), ("8", "False")],
      "return n > 1 and sum(d for d in range(1, n) if n % d == 0) == n",
      ["1", "2", "28", "27", "496", "12"], level="medium",
      wrong=["return sum(d for d in range(1, n + 1) if n % d == 0) == n"]),
    t("math", "trailing_zeros(n: int) -> int",
      "Return how many zeros the positive number n ends with in decimal.",
      [("1200", "2"), ("7", "0")],
      "count = 0\nwhile n % 10 == 0:\n    n //= 10\n    count += 1\nreturn count",
      ["10", "1", "1000000", "1010", "505000"]),
    t("math", "days_in_month(month: int) -> int",
      "Return the number of days of month 1 to 12 in a year that is not a leap year.",
      [("1", "31"), ("2", "28")],
      "return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]",
      ["4", "6", "7", "9", "11", "12"]),
    t("math", "quadrant(x: int, y: int) -> int",
      "Return the quadrant (1, 2, 3 or 4) of the point (x, y), or 0 if it lies on an axis.",
      [("2, 3", "1"), ("-2, 3", "2")],
      "if x == 0 or y == 0:\n    return 0\nif x > 0:\n    return 1 if y > 0 else 4\nreturn 2 if y > 0 else 3",
      ["0, 0", "-1, -1", "5, -5", "0, 7", "-3, 0", "1, 1"], level="medium"),
    t("math", "letter_grade(score: int) -> str",
      "Return 'A' for a score of 90 or more, 'B' for 80-89, 'C' for 70-79, 'D' for 60-69 and 'F' below "
      "60.",
      [("95", "'A'"), ("59", "'F'")],
      "if score >= 90:\n    return 'A'\nif score >= 80:\n    return 'B'\nif score >= 70:\n    return 'C'\n"
      "if score >= 60:\n    return 'D'\nreturn 'F'",
      ["90", "89", "80", "70", "69", "60", "0", "100"], level="easy"),
    t("math", "nth_term(first: int, step: int, n: int) -> int",
      "Return the n-th term (n starts at 1) of the arithmetic sequence that starts at first and grows by "
      "step each term.",
      [("2, 3, 1", "2"), ("2, 3, 4", "11")],
      "return first + (n - 1) * step",
      ["0, 0, 5", "5, -2, 3", "-1, 1, 10", "7, 0, 100", "1, 10, 2"], wrong=["return first + n * step"]),
    t("math", "min_coins(cents: int) -> int",
      "Return the fewest coins of 25, 10, 5 and 1 cents that add up to cents.",
      [("30", "2"), ("7", "3")],
      "count = 0\nfor coin in (25, 10, 5, 1):\n    count += cents // coin\n    cents %= coin\nreturn count",
      ["0", "1", "25", "41", "99", "100"], level="medium"),
    t("math", "clock_time(minutes: int) -> str",
      "Return a number of minutes written as 'H:MM' (hours, then minutes with two digits).",
      [("125", "'2:05'"), ("59", "'0:59'")],
      "return f'{minutes // 60}:{minutes % 60:02d}'",
      ["0", "60", "61", "600", "1439", "10"], level="medium"),
    t("math", "triangle_kind(a: int, b: int, c: int) -> str",
      "Return 'equilateral' if the three sides are all equal, 'isosceles' if exactly two are equal, and "
      "'scalene' otherwise.",
      [("2, 2, 2", "'equilateral'"), ("3, 4, 5", "'scalene'")],
      "if a == b == c:\n    return 'equilateral'\nif a == b or b == c or a == c:\n    return 'isosceles'\n"
      "return 'scalene'",
      ["2, 2, 3", "3, 2, 2", "2, 3, 2", "5, 6, 7", "1, 1, 1"], level="easy"),
    t("math", "rectangle_area(width: int, height: int) -> int",
      "Return the area of a rectangle with the given width and height.",
      [("3, 4", "12"), ("5, 5", "25")],
      "return width * height",
      ["0, 7", "1, 1", "10, 2", "2, 10", "100, 3"], level="very easy", wrong=["return 2 * (width + height)"]),
    t("math", "speeding_fine(speed: int) -> int",
      "Return the fine for a speed in km/h: 0 up to 50, 100 from 51 to 70, and 300 above 70.",
      [("45", "0"), ("65", "100")],
      "if speed <= 50:\n    return 0\nif speed <= 70:\n    return 100\nreturn 300",
      ["50", "51", "70", "71", "0", "120"]),

    # dicts ---------------------------------------------------------------------------------------
    t("dicts", "dict_depth(d: dict) -> int",
      "Return how deeply dicts nest in d: 1 if no value of d is a dict, otherwise 1 plus the depth of its "
      "deepest dict value.",
      [("{'a': 1}", "1"), ("{'a': {'b': {'c': 1}}}", "3")],
      "deepest = 0\nfor v in d.values():\n    if isinstance(v, dict):\n"
      "        deepest = max(deepest, dict_depth(v))\nreturn 1 + deepest",
      ["{}", "{'a': {}}", "{'a': 1, 'b': {'c': 2}}", "{'x': {'y': 1}, 'z': {'w': {'v': 2}}}",
       "{'k': [{'a': 1}]}", "{'a': {'b': 1}, 'c': {'d': 2}}"], level="medium",
      wrong=["return 1 + sum(1 for v in d.values() if isinstance(v, dict))"]),
    t("dicts", "nested_get(d: dict, path: list)",
      "Follow the keys in path through nested dicts starting at d and return the value found, or None "
      "if some key is missing.",
      [("{'a': {'b': 1}}, ['a', 'b']", "1"), ("{'x': {'y': {'z': 'deep'}}}, ['x', 'y', 'z']", "'deep'")],
      "cur = d\nfor key in path:\n    if not isinstance(cur, dict) or key not in cur:\n        return None\n"
      "    cur = cur[key]\nreturn cur",
      ["{'a': {}}, ['a', 'x']", "{'a': 1}, ['a']", "{'a': 1}, ['b']",
       "{'a': {'b': {'c': 3}}}, ['a', 'b', 'c']",
       "{'a': {'b': 2}}, ['a']", "{'a': 5}, ['a', 'b']"], level="medium"),
    t("dicts", "rename_key(d: dict, old, new) -> dict",
      "Return a copy of d where the key old is renamed to new (keeping its value); d unchanged if old "
      "is missing.",
      [("{'a': 1, 'b': 2}, 'a', 'z'", "{'b': 2, 'z': 1}"), ("{'a': 1}, 'x', 'y'", "{'a': 1}")],
      "out = dict(d)\nif old in out:\n    out[new] = out.pop(old)\nreturn out",
      ["{}, 'a', 'b'", "{'a': 0}, 'a', 'a'", "{1: 'one'}, 1, 2", "{'k': [1]}, 'k', 'j'",
       "{'a': 1, 'b': 2}, 'b', 'c'"],
      level="easy"),
    t("dicts", "word_score(word: str, scores: dict[str, int]) -> int",
      "Return the total score of word: the sum of scores[c] over its characters, where characters not "
      "in scores count 0.",
      [("'cab', {'a': 1, 'b': 3, 'c': 3}", "7"), ("'zz', {'a': 1}", "0")],
      "return sum(scores.get(c, 0) for c in word)",
      ["'', {'a': 1}", "'a', {}", "'aaa', {'a': 2}", "'abc', {'b': 10}", "'hello', {'l': 1, 'o': 5}"]),
    t("dicts", "apply_sales(stock: dict[str, int], sales: dict[str, int]) -> dict[str, int]",
      "Return a new stock dict with the sold amounts subtracted; a count never goes below 0, and sales "
      "of items not in stock are ignored.",
      [("{'apple': 5, 'pear': 2}, {'apple': 3}", "{'apple': 2, 'pear': 2}"), ("{'kiwi': 1}, {'kiwi': 4}",
                                                                               "{'kiwi': 0}")],
      "return {item: max(count - sales.get(item, 0), 0) for item, count in stock.items()}",
      ["{}, {}", "{}, {'x': 1}", "{'a': 1}, {}", "{'a': 3, 'b': 3}, {'a': 3, 'b': 1, 'c': 9}",
       "{'a': 10}, {'a': 10}"], level="medium"),
    t("dicts", "parse_settings(text: str) -> dict[str, str]",
      "Parse text of the form 'key=value,key=value' into a dict of strings (an empty text gives {}).",
      [("'a=1,b=2'", "{'a': '1', 'b': '2'}"), ("''", "{}")],
      "out = {}\nfor part in text.split(','):\n    if part:\n        key, value = part.split('=', 1)\n"
      "        out[key] = value\nreturn out",
      ["'x=y'", "'k=v,k=w'", "'name=Ann,age=30,city=Oslo'", "'e='", "'a=b=c'"], level="medium"),

    # sets and tuples -----------------------------------------------------------------------------
    t("sets_tuples", "squared_distance(p: tuple[int, int], q: tuple[int, int]) -> int",
      "Return the squared straight-line distance between the points p and q, given as (x, y) tuples.",
      [("(0, 0), (3, 4)", "25"), ("(1, 1), (1, 1)", "0")],
      "return (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2",
      ["(0, 0), (0, 0)", "(-1, -1), (1, 1)", "(2, 3), (2, 7)", "(5, 0), (0, 0)", "(-3, 4), (3, -4)"]),
    t("sets_tuples", "count_ascending_pairs(pairs: list[tuple[int, int]]) -> int",
      "Return how many pairs (a, b) in pairs have a < b.",
      [("[(1, 2), (3, 1), (2, 5)]", "2"), ("[]", "0")],
      "return sum(1 for a, b in pairs if a < b)",
      ["[(1, 1)]", "[(0, 1)]", "[(-2, -1), (-1, -2)]", "[(5, 4), (4, 3)]", "[(1, 9), (2, 8), (3, 7)]"],
      wrong=["return sum(1 for a, b in pairs if a <= b)"]),
    t("sets_tuples", "all_pairs(a: list, b: list) -> list[tuple]",
      "Return every pair (x, y) with x from a and y from b, ordered by x's position first, then y's.",
      [("[1, 2], ['x', 'y']", "[(1, 'x'), (1, 'y'), (2, 'x'), (2, 'y')]"), ("[], [1]", "[]")],
      "return [(x, y) for x in a for y in b]",
      ["[1], []", "[0], [0]", "['a'], [1, 2, 3]", "[1, 2, 3], ['z']", "[1, 1], [2]"], level="easy"),
    t("sets_tuples", "same_elements(a: list, b: list) -> bool",
      "Return True if a and b contain the same values the same number of times, in any order.",
      [("[1, 2, 2], [2, 1, 2]", "True"), ("[1, 2], [1, 2, 2]", "False")],
      "return sorted(a) == sorted(b)",
      ["[], []", "[1], []", "[1, 1, 2], [1, 2, 2]", "[3, 2, 1], [1, 2, 3]", "[0], [0]", "[5, 5], [5]"],
      wrong=["return set(a) == set(b)"]),
    t("sets_tuples", "closest_to_origin(points: list[tuple[int, int]]) -> tuple[int, int]",
      "Return the point of the non-empty list points that is closest to (0, 0) (the first one on a tie).",
      [("[(3, 4), (1, 1), (5, 0)]", "(1, 1)"), ("[(2, 2)]", "(2, 2)")],
      "return min(points, key=lambda p: p[0] * p[0] + p[1] * p[1])",
      ["[(0, 0), (1, 0)]", "[(-1, 0), (1, 0)]", "[(10, 10), (-3, -3), (4, 0)]", "[(5, 5), (0, 8)]",
       "[(1, 2), (2, 1), (0, 3)]"], level="medium"),

    # simple algorithms ---------------------------------------------------------------------------
    t("algorithms", "eval_rpn(tokens: list[str]) -> int",
      "Evaluate an expression in reverse Polish notation whose tokens are whole numbers and the "
      "operators '+', '-' and '*'.",
      [("['2', '3', '+']", "5"), ("['5', '1', '2', '+', '*']", "15")],
      "stack = []\nfor tok in tokens:\n    if tok in ('+', '-', '*'):\n"
      "        b, a = stack.pop(), stack.pop()\n"
      "        stack.append(a + b if tok == '+' else a - b if tok == '-' else a * b)\n    else:\n"
      "        stack.append(int(tok))\nreturn stack[-1]",
      ["['7']", "['10', '4', '-']", "['4', '10', '-']", "['-3', '2', '*']", "['1', '2', '3', '*', '+']",
       "['2', '3', '4', '-', '-']"], level="medium"),
    t("algorithms", "transpose(matrix: list[list[int]]) -> list[list[int]]",
      "Return the transpose of a rectangular matrix: row i of the result is column i of matrix.",
      [("[[1, 2], [3, 4]]", "[[1, 3], [2, 4]]"), ("[[1, 2, 3]]", "[[1], [2], [3]]")],
      "return [list(col) for col in zip(*matrix)]",
      ["[]", "[[5]]", "[[1], [2], [3]]", "[[1, 2, 3], [4, 5, 6]]", "[[0, 0], [0, 1]]"], level="medium"),
    t("algorithms", "diagonal_sum(matrix: list[list[int]]) -> int",
      "Return the sum of the main diagonal (top-left to bottom-right) of a square matrix.",
      [("[[1, 2], [3, 4]]", "5"), ("[[7]]", "7")],
      "return sum(matrix[i][i] for i in range(len(matrix)))",
      ["[]", "[[1, 2, 3], [4, 5, 6], [7, 8, 9]]", "[[0, 1], [1, 0]]", "[[-1, 0], [0, -1]]",
       "[[2, 9, 9], [9, 3, 9], [9, 9, 4]]"]),
    t("algorithms", "expand_counts(pairs: list[tuple[str, int]]) -> str",
      "Build a string from (character, count) pairs, repeating each character count times in order.",
      [("[('a', 3), ('b', 1)]", "'aaab'"), ("[]", "''")],
      "return ''.join(ch * n for ch, n in pairs)",
      ["[('x', 0)]", "[('z', 1)]", "[('a', 1), ('a', 2)]", "[('-', 3), ('>', 1)]",
       "[('a', 2), ('b', 0), ('c', 2)]"]),
    t("algorithms", "count_inversions(nums: list[int]) -> int",
      "Return how many index pairs i < j have nums[i] > nums[j].",
      [("[3, 1, 2]", "2"), ("[1, 2, 3]", "0")],
      "return sum(1 for i in range(len(nums)) for j in range(i + 1, len(nums)) if nums[i] > nums[j])",
      ["[]", "[1]", "[2, 1]", "[4, 3, 2, 1]", "[1, 1, 1]", "[2, 4, 1, 3, 5]"], level="medium",
      wrong=["return sum(1 for i in range(len(nums) - 1) if nums[i] > nums[i + 1])"]),
    t("algorithms", "look_and_say(s: str) -> str",
      "Return the next term of the look-and-say sequence: read the digit string s aloud as counts of "
      "runs, e.g. '1211' is one 1, one 2, two 1s -> '111221'.",
      [("'1211'", "'111221'"), ("'1'", "'11'")],
      "out = []\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n"
      "        j += 1\n"
      "    out.append(str(j - i) + s[i])\n    i = j\nreturn ''.join(out)",
      ["''", "'11'", "'21'", "'111221'", "'3333'"], level="medium"),
]


# ---------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------

def prompt_of(task: Task) -> str:
    sig = task.signature.rstrip(":")
    doc_lines = _wrap(task.doc)
    lines = [f"def {sig}:", '    """' + doc_lines[0]]
    lines += ["    " + line for line in doc_lines[1:]]
    for args, expected in task.examples:
        lines += [f"    >>> {task.name}({args})", f"    {expected}"]
    lines.append('    """')
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 92) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return out


def _indent(body: str) -> str:
    return "".join("    " + line + "\n" if line.strip() else "\n" for line in body.split("\n"))


def _assert(name: str, args: str, value) -> str:
    if isinstance(value, float):
        return f"assert abs({name}({args}) - {value!r}) < 1e-9"
    if value is None:
        return f"assert {name}({args}) is None"
    return f"assert {name}({args}) == {value!r}"


def _run(ref: str, name: str, args: str):
    ns: dict = {}
    exec(ref, ns)  # noqa: S102 - the team's own reference solutions
    return eval(f"{name}({args})", ns)


def _shows_edge_case(args: str) -> bool:
    """An argument that is empty or zero ('', [], {}, (), 0)."""
    return any(not isinstance(v, bool) and v in ("", [], {}, (), 0) for v in eval(f"({args},)"))


def _call_key(args: str) -> str:
    return ast.dump(ast.parse(f"f({args})", mode="eval"))


def _fails(code: str, tests: list[str]) -> bool:
    for test in tests:
        ns: dict = {}
        try:
            exec(code, ns)  # noqa: S102 - the team's own wrong variants and tests
            exec(test, ns)  # noqa: S102
        except Exception:  # noqa: BLE001 - any error means the variant is caught
            return True
    return False


def build_row(task: Task, split: str) -> dict:
    source = SOURCES[split]
    prompt = prompt_of(task)
    ref = prompt + _indent(task.body)
    examples = []
    for args, expected in task.examples:
        got = _run(ref, task.name, args)
        if got is None:
            raise ValueError(f"{task.name}({args}): doctest cannot show a None result; pick another example")
        if repr(got) != expected:
            raise ValueError(f"{task.name}({args}): reference gives {got!r}, docstring says {expected}")
        examples.append(_assert(task.name, args, got))
    calls = list(task.tests)
    keys = {_call_key(args) for args in calls}
    for args, _ in task.examples:  # an edge case shown in the docstring is also a hidden test
        if _shows_edge_case(args) and _call_key(args) not in keys:
            calls.insert(0, args)
            keys.add(_call_key(args))
    tests = []
    for args in calls:
        value = _run(ref, task.name, args)
        if eval(repr(value)) != value:
            raise ValueError(f"{task.name}({args}): result {value!r} does not round-trip through repr")
        tests.append(_assert(task.name, args, value))
    if not 5 <= len(tests) <= 8:
        raise ValueError(f"{task.name}: {len(tests)} hidden tests, want 5-8")
    if len(set(tests)) != len(tests):
        raise ValueError(f"{task.name}: duplicate hidden tests")
    for i, wrong in enumerate(task.wrong):
        if not _fails(prompt + _indent(wrong), tests):
            raise ValueError(f"{task.name}: wrong variant {i} passes every hidden test")
    return {
        "problem_id": f"{source}/{task.name}",
        "source": source,
        "prompt": prompt,
        "entry_point": task.name,
        "starter_code": prompt,
        "reference_solution": ref,
        "given_tests": [{"code": c} for c in tests],
        "example_tests": [{"code": c} for c in examples],
        "metadata": {"difficulty": task.level, "family": task.family, "split": split},
    }


def render(split: str) -> str:
    tasks = TRAIN if split == "train" else EVAL
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"{split}: duplicate entry points")
    rows, errors = [], []
    for task in tasks:
        try:
            rows.append(json.dumps(build_row(task, split), ensure_ascii=False) + "\n")
        except Exception as e:  # noqa: BLE001 - report every bad task at once
            errors.append(f"{split}: {e!r}")
    if errors:
        raise SystemExit("\n".join(errors))
    return "".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed files; write nothing")
    args = parser.parse_args(argv)
    overlap = {task.name for task in TRAIN} & {task.name for task in EVAL}
    if overlap:
        raise SystemExit(f"entry points in both splits: {sorted(overlap)}")
    status = 0
    for split in ("train", "eval"):
        path = ASSETS / f"easy_{split}.jsonl"
        text = render(split)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is not what {Path(__file__).name} writes", file=sys.stderr)
                status = 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10))} problems)")
    return status


if __name__ == "__main__":
    sys.exit(main())
