"""The `summarization` task's items: passages of 80-200 words written for energyray (the
places, people and organisations in them are invented), each with a one-sentence reference
summary (scored by ROUGE-L F1)."""

from __future__ import annotations

# (passage, reference summary, category)
SUMMARIZATION_ITEMS: list[tuple[str, str, str]] = [
    (
        "The town council of Eastbrook voted on Tuesday to extend the opening hours of its public library. "
        "From next month the library will stay open until nine in the evening on weekdays, instead of six, "
        "and it will open on Sunday afternoons for the first time. Council members said that students had "
        "asked for a quiet place to study after school and that many working adults could not visit before "
        "closing time. The extra hours will cost about 40,000 dollars a year, paid for by cutting the budget "
        "for printed brochures and moving most announcements online. Two members voted against the plan, "
        "arguing that the money should go to repairing the building's roof first. The library director "
        "welcomed the decision and said she would hire two part-time staff.",
        "Eastbrook's council voted to keep the library open later on weekdays and on Sunday afternoons, "
        "paid for by cutting printed brochures.",
        "news",
    ),
    (
        "Bees and many other insects carry pollen from one flower to another as they feed on nectar. This "
        "transfer lets plants produce seeds and fruit, so a large share of the crops people eat depends on "
        "pollinators. In recent decades researchers have recorded declines in some wild bee populations. "
        "The causes they point to include the loss of wildflower habitat, the use of certain pesticides, "
        "diseases and parasites, and changes in climate that shift when flowers bloom. Farmers and gardeners "
        "can help by planting a variety of flowers that bloom at different times of year, leaving some "
        "ground undisturbed for nesting, and using pesticides sparingly.",
        "Pollinating insects are vital for crops but some wild bees are declining because of habitat loss, "
        "pesticides, disease and climate change, and planting varied flowers can help.",
        "science",
    ),
    (
        "Northwind Cycles, a small bicycle maker, reported that its sales rose by 18 percent last year, "
        "driven mostly by electric bikes, which now make up half of its revenue. The company opened a second "
        "workshop in the spring and hired twenty new mechanics. Its profits, however, grew more slowly than "
        "sales because the price of batteries and aluminium frames went up. The chief executive said the "
        "company would not raise its prices this year and would instead try to save money by buying parts in "
        "larger batches. She expects growth to continue as more cities build protected bike lanes.",
        "Northwind Cycles' sales rose 18 percent on electric bikes, but higher battery and frame costs held "
        "back profits.",
        "business",
    ),
    (
        "Getting enough sleep matters for both the body and the mind. During sleep the brain sorts and "
        "stores memories from the day, which is why students who sleep well after studying tend to remember "
        "more. Sleep also helps the immune system and the repair of muscles. Adults are generally advised to "
        "sleep seven to nine hours a night, while teenagers need more. Common habits that make sleep worse "
        "include drinking coffee late in the day, using bright screens just before bed, and going to bed at "
        "very different times each night. Keeping a regular schedule and a dark, cool bedroom can make it "
        "easier to fall asleep.",
        "Sleep helps memory, immunity and repair, adults need seven to nine hours, and regular habits and a "
        "dark, cool room improve it.",
        "health",
    ),
    (
        "The village of Harlow Green held its first repair café last Saturday in the community hall. "
        "Volunteers with skills in sewing, electronics and carpentry spent the day fixing items that "
        "residents brought in, free of charge. By the end of the afternoon they had mended 46 things, "
        "including toasters, lamps, a rocking chair and a pile of torn jackets. Only nine items could not be "
        "saved. The organisers said the event was meant to cut waste and to teach people simple repairs, "
        "since visitors were invited to watch and help. Because of the strong turnout, the café will now "
        "take place on the first Saturday of every month.",
        "Harlow Green's first repair café fixed 46 items for free and will now be held monthly.",
        "community",
    ),
    (
        "Deserts are often imagined as hot, sandy places, but a desert is defined by how little "
        "precipitation it receives, not by its temperature. Some of the largest deserts on Earth are cold, "
        "such as the interior of Antarctica, where very little snow falls each year. Hot deserts can also be "
        "cold at night, because dry air and clear skies let heat escape quickly after sunset. Plants and "
        "animals that live in deserts have adapted to the lack of water: cacti store water in thick stems, "
        "and many desert animals are active only at night to avoid the heat of the day.",
        "A desert is defined by low precipitation rather than heat, so some deserts are cold, and desert life "
        "is adapted to little water.",
        "science",
    ),
    (
        "A software team at Larkfield Logistics moved its delivery-tracking system from a single large "
        "server to several smaller services last year. Before the change, every update required stopping the "
        "whole system for an hour, usually at night. Now each service can be updated on its own without "
        "downtime. The team reported that the move took eight months, longer than the four they had planned, "
        "mostly because the old database had to be split carefully to avoid losing records. Engineers said "
        "the new design is harder to monitor, and they have added dashboards and alerts to find problems "
        "faster.",
        "Larkfield Logistics split its tracking system into smaller services, allowing updates without "
        "downtime, though the move took twice as long as planned and is harder to monitor.",
        "technology",
    ),
    (
        "Marta Okafor started running at the age of fifty after her doctor suggested more exercise. At first "
        "she could only jog for two minutes at a time, alternating with walking. She followed a simple plan, "
        "adding a minute of running each week, and joined a local club that met on Saturday mornings. Two "
        "years later she finished her first marathon in just under five hours. She says the club's support "
        "mattered more than any training plan, and she now coaches beginners herself, telling them that "
        "patience and rest days are as important as running.",
        "Marta Okafor took up running at fifty, built up slowly with a club's support, finished a marathon two "
        "years later and now coaches beginners.",
        "people",
    ),
    (
        "Composting turns food scraps and garden waste into a dark, crumbly material that improves soil. "
        "Microorganisms break down the waste, and they work best with a mix of green material, such as "
        "vegetable peels and grass cuttings, and brown material, such as dry leaves and cardboard. The pile "
        "needs air and some moisture, so it should be turned every few weeks and kept about as damp as a "
        "wrung-out sponge. Meat and dairy products are best left out because they attract pests and smell. "
        "Depending on the conditions, finished compost can be ready in two months to a year.",
        "Compost is made by microorganisms breaking down a mix of green and brown waste kept aired and damp, "
        "without meat or dairy, over two months to a year.",
        "how-to",
    ),
    (
        "The Riverside Orchestra announced that it will perform free concerts in city parks this summer to "
        "reach people who rarely attend classical music events. The programme will mix well-known pieces "
        "with short works by local composers, and each concert will last about an hour so that families with "
        "young children can stay to the end. The orchestra received a grant from a regional arts fund to "
        "cover the costs of the stage and sound equipment. If it rains, the concerts will move to a nearby "
        "school hall. The first concert is planned for the second weekend of June.",
        "The Riverside Orchestra will give free hour-long concerts in city parks this summer, funded by an arts "
        "grant, starting in June.",
        "culture",
    ),
]
