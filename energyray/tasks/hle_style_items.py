"""The `hle_style` task's items: questions written for energyray in Humanity's Last Exam's
format (its eight categories; exact-match and multiple-choice items; multiple-choice questions
carry their "Answer Choices:" in the text, as HLE's do). They are far easier than HLE's: a
small model gets some right, so accuracy per category is measurable on a CPU.

The prompt is HLE's response format ("Explanation: / Answer: / Confidence:") followed by the
question; the model's stated confidence is recorded with each score."""

from __future__ import annotations

CATEGORIES = ("Math", "Physics", "Biology/Medicine", "Chemistry", "Engineering", "Computer Science/AI",
              "Humanities/Social Science", "Other")

# HLE asks for this format (in its system prompt); energyray puts it before the question
RESPONSE_FORMAT = (
    "Your response should be in the following format:\n"
    "Explanation: {your explanation for your final answer}\n"
    "Answer: {your succinct, final answer}\n"
    "Confidence: {your confidence score between 0% and 100% for your answer}"
)
RESPONSE_FORMAT_BRIEF = (
    "Your response should be in the following format, and short:\n"
    "Explanation: {one short sentence}\n"
    "Answer: {your succinct, final answer}\n"
    "Confidence: {your confidence score between 0% and 100% for your answer}"
)

# (category, question, gold, choices, other accepted answers); choices () -> exact match, gold the answer;
# choices given -> multiple choice, gold the letter. The working behind a gold is in its comment.
HLE_STYLE_ITEMS: list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("Math", "How many positive divisors does the number 2^4 * 3^2 * 5 have?", "30", (), ()),  # 5*3*2
    ("Math", "What is the remainder when 7^100 is divided by 13?", "C",
     ("1", "3", "9", "12"), ()),  # 7^6 = -1 mod 13, so 7^12 = 1; 7^100 = 7^4 = 2401 = 13*184 + 9
    ("Math", "In how many ways can a 2 x 10 rectangle be tiled with 1 x 2 dominoes?", "89",
     (), ()),  # t(n) = t(n-1) + t(n-2), t(1) = 1, t(2) = 2: Fibonacci, t(10) = 89
    ("Math", "What is the sum of the interior angles of a convex 12-sided polygon, in degrees?", "1800",
     (), ()),  # (12 - 2)*180
    ("Physics", "An object is dropped from rest and falls freely with g = 9.8 m/s^2, ignoring air "
     "resistance. What is its speed in m/s after 3 seconds?", "29.4", (), ()),  # 9.8*3
    ("Physics", "What is the equivalent resistance of a 6-ohm resistor and a 3-ohm resistor connected in "
     "parallel?", "C", ("9 ohms", "4.5 ohms", "2 ohms", "0.5 ohms"), ()),  # 6*3/(6+3)
    ("Physics", "The volume of a fixed amount of ideal gas is halved at constant temperature. By what "
     "factor does its pressure change?", "2", (), ("doubles",)),  # Boyle: pV constant
    ("Physics", "Which quantity is conserved in a perfectly inelastic collision between two bodies with no "
     "external forces?", "B", ("Kinetic energy only", "Linear momentum only",
                               "Both kinetic energy and linear momentum", "Neither"), ()),
    ("Biology/Medicine", "In which part of a eukaryotic cell does the citric acid (Krebs) cycle take place?",
     "B", ("Cytosol", "Mitochondrial matrix", "Nucleus", "Endoplasmic reticulum"), ()),
    ("Biology/Medicine", "How many chromosomes does a typical human somatic (non-reproductive) cell "
     "contain?", "46", (), ()),
    ("Biology/Medicine", "Two parents are both heterozygous (Aa) for a recessive trait a. What fraction of "
     "their children are expected to show the recessive trait?", "1/4", (), ()),  # aa: 1/2 * 1/2
    ("Biology/Medicine", "A lack of which vitamin causes scurvy?", "C",
     ("Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"), ()),
    ("Chemistry", "How many moles of O2 are needed to burn 2 moles of methane (CH4) completely to CO2 and "
     "water?", "4", (), ()),  # CH4 + 2 O2 -> CO2 + 2 H2O
    ("Chemistry", "What is the hybridization of each carbon atom in ethyne (C2H2)?", "A",
     ("sp", "sp2", "sp3", "sp3d"), ()),  # a triple bond: linear
    ("Chemistry", "What is the pH of a 0.001 M solution of hydrochloric acid at 25 degrees Celsius, "
     "assuming complete dissociation?", "3", (), ()),  # -log10(1e-3)
    ("Chemistry", "Which of these elements is a noble gas?", "B",
     ("Nitrogen", "Argon", "Chlorine", "Oxygen"), ()),
    ("Engineering", "An electric heater on a 230 V supply draws a current of 10 A. What power does it use, "
     "in watts?", "2300", (), ()),  # P = V*I
    ("Engineering", "In a four-stroke internal combustion engine, during which stroke does the expanding gas "
     "do work on the piston?", "C", ("Intake", "Compression", "Power", "Exhaust"), ()),
    ("Engineering", "A gear with 40 teeth turning at 100 rpm drives a gear with 10 teeth. At how many rpm "
     "does the driven gear turn?", "400", (), ()),  # 100*40/10
    ("Engineering", "How many distinct output levels does an 8-bit analog-to-digital converter have?", "256",
     (), ()),  # 2^8
    ("Computer Science/AI", "What is the worst-case time complexity of binary search over n sorted elements, "
     "in big-O notation?", "O(log n)", (), ("log n", "O(log(n))")),
    ("Computer Science/AI", "Which data structure removes elements in first-in, first-out (FIFO) order?",
     "B", ("Stack", "Queue", "Binary heap", "Hash table"), ()),
    ("Computer Science/AI", "How many distinct values can a 16-bit unsigned integer represent?", "65536",
     (), ()),  # 2^16
    ("Computer Science/AI", "Which neural-network activation function computes max(0, x)?", "C",
     ("Sigmoid", "Tanh", "ReLU", "Softmax"), ()),
    ("Humanities/Social Science", "Which term describes a general and sustained rise in the price level of "
     "an economy?", "B", ("Deflation", "Inflation", "Recession", "Depreciation"), ()),
    ("Humanities/Social Science", "In what year did the storming of the Bastille take place, at the start "
     "of the French Revolution?", "1789", (), ()),
    ("Humanities/Social Science", "Which ancient Greek philosopher wrote the Republic, a dialogue on "
     "justice and the ideal city?", "Plato", (), ()),
    ("Humanities/Social Science", "Which philosopher wrote the Critique of Pure Reason?", "B",
     ("David Hume", "Immanuel Kant", "G. W. F. Hegel", "René Descartes"), ()),
    ("Other", "Counting squares of every size from 1 x 1 up to 8 x 8, how many squares are there on a "
     "standard 8 x 8 chessboard?", "204", (), ()),  # 1^2 + 2^2 + ... + 8^2
    ("Other", "How many semitones are there in one octave of the Western twelve-tone scale?", "12",
     (), ("twelve",)),
    ("Other", "How many face cards (jacks, queens and kings) are in a standard 52-card deck?", "B",
     ("4", "12", "13", "16"), ()),  # 3 ranks * 4 suits
    ("Other", "How many days does February have in a leap year?", "29", (), ("twenty-nine",)),
]
