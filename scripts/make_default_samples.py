"""Regenerate saemui/data/default_samples.jsonl: the built-in prompts answered by the embedded default model.

The responses are SmolLM2-135M-Instruct's own greedy answers (deterministic), so `saemui run` with no arguments
measures MUI on real model output without generating at run time. Usage:
    python scripts/make_default_samples.py [--out saemui/data/default_samples.jsonl]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saemui.models import load_model
from saemui.records import Sample, write_samples
from saemui.tasks.generation import generate

# A spread of everyday skills (facts, arithmetic, code, writing, reasoning), short enough for a fast default run.
PROMPTS = [
    ("fact", "What is the capital of France?"),
    ("fact", "Who wrote the play Romeo and Juliet?"),
    ("fact", "What is the largest planet in our solar system?"),
    ("fact", "What gas do plants absorb from the air?"),
    ("fact", "How many continents are there on Earth?"),
    ("fact", "What is the boiling point of water in Celsius?"),
    ("math", "What is 7 + 5?"),
    ("math", "What is 12 times 3?"),
    ("math", "If I have 10 apples and eat 4, how many are left?"),
    ("math", "What is half of 50?"),
    ("math", "Is 17 a prime number?"),
    ("math", "What is 100 minus 37?"),
    ("code", "Write a Python function that returns the square of a number."),
    ("code", "How do I reverse a list in Python?"),
    ("code", "What does the len() function do in Python?"),
    ("code", "Write a for loop in Python that prints the numbers 1 to 5."),
    ("write", "Write one sentence about the ocean."),
    ("write", "Give me a short tip for sleeping better."),
    ("write", "Describe a cat in two sentences."),
    ("write", "Write a short thank-you note to a teacher."),
    ("write", "Suggest a name for a pet goldfish."),
    ("reason", "If all cats are animals and Tom is a cat, is Tom an animal?"),
    ("reason", "Which is heavier, a kilogram of feathers or a kilogram of iron?"),
    ("reason", "What comes next in the sequence 2, 4, 6, 8?"),
    ("reason", "If today is Monday, what day is it tomorrow?"),
    ("reason", "Sara is taller than Ben. Ben is taller than Amy. Who is the shortest?"),
    ("lang", "Translate 'good morning' into Spanish."),
    ("lang", "What is the plural of 'mouse'?"),
    ("lang", "Give a synonym for 'happy'."),
    ("lang", "What is the opposite of 'cold'?"),
    ("lang", "Use the word 'bright' in a sentence."),
    ("lang", "What is a noun?"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "saemui/data/default_samples.jsonl")
    )
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    lm = load_model()
    responses = generate(lm, [p for _, p in PROMPTS], max_new_tokens=args.max_new_tokens)
    samples = [
        Sample(
            prompt=p,
            response=r,
            id=f"{cat}-{i:02d}",
            meta={
                "category": cat,
                "generator": "greedy",
                "model": lm.hf_id,
                "max_new_tokens": args.max_new_tokens,
            },
        )
        for i, ((cat, p), r) in enumerate(zip(PROMPTS, responses))
    ]
    write_samples(args.out, samples)
    print(f"wrote {len(samples)} samples to {args.out}")


if __name__ == "__main__":
    main()
