"""The `qa` task's items: short factual questions written for energyray, each with one gold
answer and the other spellings accepted (exact match after normalisation). The first eight
are the questions of the earlier regex-scored `qa` set."""

from __future__ import annotations

# (question, gold, other accepted answers, category)
QA_ITEMS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("What is the capital of France?", "Paris", (), "geography"),
    ("How many legs does a spider have?", "8", ("eight",), "nature"),
    ("What is 12 multiplied by 3?", "36", ("thirty-six",), "arithmetic"),
    ("Which planet is known as the Red Planet?", "Mars", (), "science"),
    ("What gas do plants absorb from the air for photosynthesis?", "carbon dioxide", ("CO2",), "science"),
    ("Who wrote the play Romeo and Juliet?", "Shakespeare", ("William Shakespeare",), "culture"),
    ("What is the chemical symbol for gold?", "Au", (), "science"),
    ("How many days are there in a leap year?", "366", ("three hundred sixty-six",), "arithmetic"),
    ("What is the largest ocean on Earth?", "Pacific", ("Pacific Ocean",), "geography"),
    ("How many sides does a hexagon have?", "6", ("six",), "arithmetic"),
    ("At sea level, at what temperature in degrees Celsius does water freeze?", "0", ("zero",), "science"),
    ("Which chemical element has atomic number 1?", "hydrogen", ("H",), "science"),
    ("What is the square root of 81?", "9", ("nine",), "arithmetic"),
    ("In which country are the pyramids of Giza?", "Egypt", (), "geography"),
    ("What is the longest bone in the human body?", "femur", ("thigh bone", "thighbone"), "nature"),
    ("How many minutes are there in an hour?", "60", ("sixty",), "arithmetic"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", ("da Vinci", "Leonardo"), "culture"),
    ("What is the capital of Japan?", "Tokyo", (), "geography"),
    ("Which planet is closest to the Sun?", "Mercury", (), "science"),
    ("What language is most widely spoken in Brazil?", "Portuguese", (), "geography"),
    ("How many strings does a standard violin have?", "4", ("four",), "culture"),
    ("What is the chemical formula of water?", "H2O", (), "science"),
    ("In what year did the Second World War end?", "1945", (), "history"),
    ("What is the smallest prime number?", "2", ("two",), "arithmetic"),
    ("Which organ pumps blood around the human body?", "heart", (), "nature"),
    ("Who developed the general theory of relativity?", "Albert Einstein", ("Einstein",), "science"),
    ("At sea level, at what temperature in degrees Celsius does water boil?", "100",
     ("one hundred", "a hundred"), "science"),
    ("How many players does one football (soccer) team have on the pitch at the start of a match?", "11",
     ("eleven",), "culture"),
    ("What is the highest mountain on Earth above sea level?", "Mount Everest", ("Everest",), "geography"),
    ("Which metal is a liquid at room temperature?", "mercury", ("Hg",), "science"),
    ("What is the capital of Canada?", "Ottawa", (), "geography"),
    ("How many hours are there in a week?", "168", (), "arithmetic"),
]
