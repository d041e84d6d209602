"""The `reasoning` task's items: multi-step word problems written for energyray, each with
one exact numeric answer (scored within a relative tolerance of 1e-6)."""

from __future__ import annotations

# (problem, exact numeric answer, category); the arithmetic behind each answer is in the comment
REASONING_ITEMS: list[tuple[str, str, str]] = [
    ("A baker fills 7 trays with 24 muffins each and sells 150 muffins. How many muffins are left?",
     "18", "arithmetic"),  # 7*24 - 150
    ("A train travels at 80 km/h for 2.5 hours and then at 60 km/h for 1.5 hours. How many kilometres "
     "does it travel in total?", "290", "rates"),  # 80*2.5 + 60*1.5
    ("A shirt costs 40 dollars. Its price is cut by 25%, and then a 10% sales tax is added to the reduced "
     "price. What is the final price in dollars?", "33", "percentages"),  # 40*0.75*1.1
    ("A father is three times as old as his daughter. In 12 years he will be twice as old as she will be. "
     "How old is the father now?", "36", "algebra"),  # 3d + 12 = 2(d + 12) -> d = 12
    ("A rectangle has a perimeter of 50 cm and a length of 15 cm. What is its area in square centimetres?",
     "150", "geometry"),  # width (50 - 30)/2 = 10
    ("An empty tank holds 1,200 litres. A pipe fills it at 30 litres per minute while a leak drains 10 "
     "litres per minute. How many minutes until the tank is full?", "60", "rates"),  # 1200/(30 - 10)
    ("Three consecutive whole numbers add up to 96. What is the largest of them?", "33",
     "algebra"),  # 31 + 32 + 33
    ("A recipe needs 3 eggs for 4 servings. How many eggs are needed for 20 servings?", "15",
     "arithmetic"),  # 3*20/4
    ("Pens cost 1.20 dollars each and notebooks 3.50 dollars each. Sam buys 5 pens and 3 notebooks and "
     "pays with a 20-dollar note. How much change, in dollars, does he get?", "3.5",
     "arithmetic"),  # 20 - (6 + 10.5)
    ("A car uses 6 litres of fuel per 100 km, and fuel costs 1.50 dollars per litre. What does the fuel "
     "for a 450 km trip cost, in dollars?", "40.5", "rates"),  # 450/100*6 = 27 l; 27*1.5
    ("In a class of 30 students, 40% are boys. How many girls are in the class?", "18",
     "percentages"),  # 30*0.6
    ("A clock shows 3:15. What is the smaller angle, in degrees, between the hour and minute hands?",
     "7.5", "geometry"),  # hour hand 90 + 15*0.5 = 97.5; minute hand 90
    ("A book has 342 pages. Maria reads 18 pages every day. How many days does she need to finish it?",
     "19", "arithmetic"),  # 342/18
    ("A farm has only chickens and cows: 30 heads and 74 legs in all. How many cows are there?", "7",
     "algebra"),  # c + h = 30, 4c + 2h = 74 -> 2c = 14
    ("What is the mean of the numbers 12, 15, 21 and 32?", "20", "arithmetic"),  # 80/4
    ("A phone plan costs 15 dollars a month plus 5 cents per text message. One month's bill is 21.40 "
     "dollars. How many messages were sent?", "128", "algebra"),  # (21.40 - 15)/0.05
    ("One painter can paint a fence in 6 hours and another in 3 hours. Working together, how many hours "
     "do they take?", "2", "rates"),  # 1/(1/6 + 1/3)
    ("A town of 8,000 people grows by 5% each year. What is its population after 2 years?", "8820",
     "percentages"),  # 8000*1.05**2
    ("A staircase has 14 steps, each 18 cm high. How many metres does it rise in total?", "2.52",
     "arithmetic"),  # 14*18 = 252 cm
    ("How many seconds are there in 2.5 hours?", "9000", "arithmetic"),  # 2.5*3600
]
