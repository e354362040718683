"""Write editclip/pools/general.txt: the general description pool for TextSpan.

The pool combines hand-written vocabularies with rotating phrasings (so each kind of thing is
described several ways) and a long list of hand-written sentences. The output is deterministic.
Run from the repository root: ``python scripts/make_general_pool.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "editclip" / "pools" / "general.txt"

_AN_EXCEPTIONS = ("uni", "use", "usu", "ukul", "euro", "one", "once", "ewe")
_AN_SILENT_H = ("hour", "honest", "honour", "heir")


def a(noun: str) -> str:
    """The noun with its indefinite article."""
    low = noun.lower()
    vowel = low[0] in "aeiou" and not low.startswith(_AN_EXCEPTIONS)
    return ("an " if vowel or low.startswith(_AN_SILENT_H) else "a ") + noun


def rotate(items: list[str], templates: list[str], offset: int = 0) -> list[str]:
    """Describe each item with one template, cycling through the templates."""
    out = []
    for i, item in enumerate(items):
        template = templates[(i + offset) % len(templates)]
        out.append(template.format(x=item, a=a(item)))
    return out


# ---------------------------------------------------------------- objects
OBJECTS = """teapot, coffee mug, wine glass, frying pan, wooden spoon, cutting board, kitchen knife, toaster,
microwave oven, electric kettle, blender, rolling pin, cheese grater, colander, salt shaker, pepper mill,
measuring cup, whisk, ladle, soup pot, baking tray, tin can, glass jar, plastic bottle, water bottle, thermos,
lunch box, picnic basket, umbrella, walking stick, backpack, leather suitcase, handbag, wallet, key ring,
padlock, door handle, light switch, desk lamp, floor lamp, chandelier, candle, lantern, flashlight, alarm clock,
wall clock, wristwatch, hourglass, mirror, picture frame, vase of flowers, flower pot, watering can, garden hose,
wheelbarrow, shovel, rake, hammer, screwdriver, wrench, pair of pliers, handsaw, power drill, tape measure,
paintbrush, paint roller, ladder, toolbox, nail, screw, rope, chain, bucket, broom, mop, vacuum cleaner,
washing machine, ironing board, clothes hanger, laundry basket, bath towel, toothbrush, hairbrush, comb,
bar of soap, shampoo bottle, razor, hair dryer, pillow, blanket, quilt, bunk bed, sofa, armchair, rocking chair,
stool, bench, bookshelf, wardrobe, chest of drawers, coffee table, dining table, office chair, writing desk,
filing cabinet, laptop, desktop computer, computer keyboard, computer mouse, monitor, tablet, smartphone,
old rotary phone, television, remote control, radio, record player, cassette tape, pair of headphones,
loudspeaker, microphone, camera, film camera, tripod, projector, printer, calculator, game controller,
video game console, pen, pencil, fountain pen, eraser, ruler, pair of scissors, stapler, paper clip, notebook,
sketchbook, envelope, postage stamp, calendar, globe, world map, compass, magnifying glass, telescope,
microscope, pair of binoculars, chess board, deck of cards, pair of dice, jigsaw puzzle, teddy bear, doll,
toy car, toy train, kite, yo-yo, spinning top, rubber duck, balloon, beach ball, skateboard, scooter,
tennis racket, baseball bat, baseball glove, golf club, hockey stick, bowling ball, soccer ball, basketball,
volleyball, football helmet, boxing gloves, surfboard, snowboard, pair of skis, sled, fishing rod, tent,
sleeping bag, camping stove, campfire grill, water pistol, guitar, violin, piano, drum kit, trumpet, saxophone,
flute, accordion, harp, harmonica, banjo, ukulele, cello, xylophone, tambourine, metronome, birdcage,
fish tank, dog leash, cat bed, scarecrow, mailbox, fire hydrant, parking meter, traffic cone, street lamp,
park bench, trash can, recycling bin, shopping cart, vending machine, cash register, crown, sword, shield,
suit of armour, treasure chest, trophy, medal, ring, necklace, bracelet, pair of earrings, brooch,
pocket watch, pair of glasses, pair of sunglasses, top hat, baseball cap, straw hat, woollen scarf,
pair of gloves, pair of boots, pair of sneakers, pair of sandals, high heels, necktie, bow tie, belt,
button, zipper, sewing machine, spool of thread, pair of knitting needles, ball of yarn, basket, cardboard box,
wooden crate, barrel, anvil, bell, church bell, horseshoe, saddle, bicycle helmet, gas mask, stethoscope,
syringe, thermometer, first aid kit, pill bottle, wheelchair, pair of crutches, hearing aid, fire extinguisher,
smoke detector, electric fan, air conditioner, radiator, fireplace, stove, refrigerator, dishwasher,
sink, bathtub, shower head, toilet, doormat, welcome sign, window blind, curtain, rug, tapestry, hammock,
swing, slide, seesaw, sandbox, birdhouse, wind chime, flag, weather vane, sundial, fountain, statue,
gravestone, anchor, life jacket, paddle, oar, steering wheel, tyre, spare wheel, battery, light bulb,
extension cord, power plug, solar panel, wind turbine, satellite dish, antenna, robot, drone, 3D printer"""

OBJECT_TEMPLATES = [
    "a photo of {a}",
    "a close-up of {a}",
    "an image with {a} in it",
    "{a} in the foreground",
    "{a} against a plain white background",
    "a product photo of {a}",
    "an old, worn {x}",
    "a black and white photo of {a}",
    "a brand-new {x}",
    "a picture showing {a}",
]

# ---------------------------------------------------------------- animals
ANIMALS = """dog, puppy, cat, kitten, horse, foal, cow, calf, pig, sheep, lamb, goat, donkey, rabbit, hamster,
guinea pig, mouse, rat, squirrel, chipmunk, hedgehog, fox, wolf, coyote, bear, polar bear, panda, koala,
kangaroo, wallaby, lion, tiger, leopard, cheetah, jaguar, lynx, elephant, rhinoceros, hippopotamus, giraffe,
zebra, camel, llama, alpaca, deer, moose, reindeer, elk, bison, buffalo, antelope, gazelle, gorilla,
chimpanzee, orangutan, monkey, lemur, sloth, armadillo, anteater, bat, otter, beaver, badger, raccoon,
skunk, opossum, weasel, mole, seal, sea lion, walrus, dolphin, whale, orca, shark, manta ray, octopus,
squid, jellyfish, starfish, sea urchin, crab, lobster, shrimp, clownfish, goldfish, salmon, trout, tuna,
pufferfish, seahorse, eel, turtle, sea turtle, tortoise, frog, toad, salamander, newt, lizard, iguana,
chameleon, gecko, snake, python, cobra, crocodile, alligator, komodo dragon, eagle, bald eagle, hawk,
falcon, owl, vulture, parrot, macaw, cockatoo, budgie, pigeon, dove, crow, raven, magpie, robin, sparrow,
finch, blue jay, cardinal, hummingbird, woodpecker, kingfisher, swallow, seagull, pelican, albatross,
puffin, penguin, flamingo, swan, goose, duck, mallard, heron, stork, crane, egret, ostrich, emu, peacock,
turkey, chicken, rooster, chick, butterfly, moth, caterpillar, bee, bumblebee, wasp, ant, beetle, ladybug,
dragonfly, grasshopper, cricket, praying mantis, spider, scorpion, snail, slug, earthworm, centipede,
firefly, mosquito, fly"""

ANIMAL_TEMPLATES = [
    "a photo of {a}",
    "{a} in its natural habitat",
    "a wildlife photo of {a}",
    "{a} seen from the side",
    "a close-up of {a}",
    "a nature documentary still of {a}",
    "{a} in motion",
    "a picture of {a} taken in the wild",
]

ANIMAL_SCENES = """a dog catching a frisbee in the park
a cat curled up asleep on a windowsill
a herd of elephants crossing a river
a flock of sheep on a green hillside
a horse galloping along a beach
a school of fish swimming over a coral reef
a bird perched on a telephone wire
geese flying in a V formation
a squirrel burying a nut
a dog with its head out of a car window
two kittens playing with a ball of wool
a lion lying in tall dry grass
a pack of wolves in the snow
a bear catching a salmon in a waterfall
a duck with ducklings swimming in a pond
a cow grazing in a meadow
a spider web covered in dew
a bee collecting pollen from a flower
a butterfly resting on a leaf
a frog sitting on a lily pad
a snake coiled on a rock
a monkey hanging from a branch
penguins standing on an ice floe
a whale breaching the ocean surface
dolphins jumping out of the water
a parrot sitting on a person's shoulder
a dog sleeping on a sofa
a cat sitting in a cardboard box
a horse pulling a cart
cattle being herded by cowboys
a goldfish in a round bowl
a pet hamster in its cage
a dog wearing a raincoat
a cat chasing a laser dot
a flock of pigeons in a city square
a heron standing in shallow water
a woodpecker on a tree trunk
an owl sitting in a hollow tree at night
a hummingbird hovering near a flower
seagulls following a fishing boat
a pelican diving into the sea
a kingfisher with a fish in its beak
a swan gliding on a calm lake
ducks on a frozen pond
a songbird on a snowy branch
a waterbird wading through a marsh
a small brown bird in a forest
a seabird on a rocky cliff
a bird feeder full of sparrows
a vulture circling in the sky
a giraffe eating leaves from a tall tree
zebras drinking at a watering hole
a cheetah running at full speed
a kangaroo with a joey in its pouch
a koala hugging a eucalyptus branch
a panda eating bamboo
a polar bear on the sea ice
a camel caravan in the desert
a llama with a colourful saddle blanket
a stray dog on a city street
a guide dog helping its owner
a dog show with groomed poodles
a cat stretching on a rug
a rabbit nibbling a carrot
a fox in a snowy field
a deer in the forest at dawn
an animal hiding in the undergrowth
a crab on the sand
a starfish in a tide pool
a jellyfish glowing in dark water
an octopus on the sea floor
a turtle swimming over sea grass
a crocodile with its mouth open
a lizard sunbathing on a wall
an ant carrying a leaf
a caterpillar on a branch
a trail of ants on the ground
a beehive in a wooden box
a wasp nest under a roof
fireflies glowing in a summer field
a mosquito on skin
a chicken coop with hens
a rooster crowing on a fence
a farmer feeding pigs
sheep being sheared
a cowshed full of dairy cows
a horse in a stable
a pony at a children's fair
a bird's nest with three blue eggs
a fish market with fresh catch
an aquarium tunnel with sharks overhead
a zoo enclosure with a tiger
a veterinarian examining a dog
a dog being walked on a leash
a cat's eyes reflecting light in the dark
a wet dog shaking off water
a muddy pig
a fluffy white dog
a black cat
a striped tabby cat
a spotted dalmatian
a golden retriever
a german shepherd
a dachshund
a bulldog
a chihuahua
a husky with blue eyes
a siamese cat
a persian cat with long fur
a hairless sphynx cat"""

# ---------------------------------------------------------------- people
PEOPLE = """a man with curly red hair
a woman with curly red hair
an old man with a long grey beard
a woman wearing thick glasses
a man with a shaved head
a girl with braided hair
a woman wearing a headscarf
a boy with freckles
a young woman with a big smile
a man with a tattoo on his arm
a man wearing a turban
a girl with blond hair in a ponytail
a woman in a business suit
a man in a wheelchair
an old woman with a walking cane
a teenager in a hoodie
a man with a thick moustache
a child in a winter coat
a bride in a wedding dress
a worker wearing a hard hat
children in school uniforms
a young man with dreadlocks
a woman with short black hair
a boy wearing a baseball cap
a student with a backpack
a woman holding an umbrella
a man carrying shopping bags
a person wearing a face mask
a child in a bright yellow raincoat
a woman wearing a sari
an old couple in traditional dress
a toddler in a knitted hat
a baby in a high chair
a sleeping baby
a newborn baby wrapped in a blanket
a teenage girl with braces
an elderly man with a hearing aid
a middle-aged woman with reading glasses
a man with a beard and glasses
a woman with a nose ring
a young woman with pink hair
a man with grey hair
a woman with long black hair
a man with a buzz cut
a woman in a floral dress
a man in a checked shirt
a girl in a princess costume
a boy in a superhero costume
an athlete in a running vest
a businessman with a briefcase
a tourist with a camera around his neck
a hiker with a big backpack
a cyclist in a helmet
a biker in a leather jacket
a woman in a fur coat
a man in a raincoat
a woman in a long winter coat
a child with a balloon
a child with an ice cream
a man with a cigarette
a woman holding a bouquet of flowers
a man holding a baby
a woman holding a cat
a boy holding a puppy
an old man with a pipe
a woman with a tattooed sleeve
a man with a scar on his face
a person with vitiligo
a person with albinism
a tall man and a short woman
a very old woman with deep wrinkles"""

PROFESSIONS = """a firefighter in uniform, a police officer, a nurse in scrubs, a doctor with a stethoscope,
a chef in a white apron, a construction worker, a farmer in a field, a fisherman on a boat, a teacher at a
blackboard, a scientist in a laboratory, a pilot in a cockpit, a flight attendant, a soldier in camouflage,
a sailor, an astronaut in a spacesuit, a judge in robes, a lawyer in court, a painter at an easel,
a musician on stage, a street performer, a barista making coffee, a waiter carrying plates, a cashier,
a mechanic under a car, a carpenter sawing wood, a plumber, an electrician on a ladder, a welder with sparks,
a baker with fresh bread, a butcher, a tailor, a hairdresser cutting hair, a barber, a dentist,
a veterinarian, a librarian, a postal worker, a delivery driver, a taxi driver, a bus driver, a train conductor,
a lifeguard, a gardener, a beekeeper, a shepherd with his flock, a miner with a headlamp, a surgeon in an
operating room, a photographer with a camera, a journalist with a notebook, a news anchor, a model on a runway,
a dancer, a ballerina, a clown, a magician, a priest, a monk in orange robes, a nun, a king on a throne,
a queen wearing a crown, a knight in armour, a cowboy, a samurai, a pirate, a programmer at a computer,
an office worker at a desk, a security guard, a street vendor, a market trader, a blacksmith at a forge,
a potter at a wheel, a jockey on a racehorse, a referee, a coach shouting instructions, a tour guide"""

PEOPLE_SCENES = """a person laughing
a person crying
an angry face
a surprised expression
a worried frown
a calm, serene face
a person yawning
a person shouting
a shy smile
a person deep in thought
a portrait of a smiling woman
a close-up portrait of an old man
a passport-style photo of a face
a face in profile
the back of a person's head
a person's hands
hands holding a cup of tea
a handshake
two people hugging
a couple holding hands
a kiss on the cheek
a mother holding her baby
a father carrying a child on his shoulders
grandparents with their grandchildren
a family having dinner together
a group of friends taking a selfie
a crowd at a concert
a crowd of protesters with signs
people waiting at a bus stop
commuters on a crowded train
shoppers in a busy market
tourists taking photos
students in a lecture hall
children playing in a schoolyard
kids splashing in a pool
a child blowing out birthday candles
a baby crawling on the floor
a toddler taking first steps
a teenager looking at a phone
an old woman knitting
an old man reading a newspaper
a man sleeping on a park bench
a woman jogging in the morning
a man riding a bicycle
a woman riding a horse
a person walking a dog
a person climbing a rock wall
a person swimming laps
a surfer riding a wave
a skier going downhill
a skateboarder doing a trick
a person doing yoga on a mat
a person lifting weights
a person meditating
people dancing at a party
a couple dancing the tango
a person playing the guitar
a person singing into a microphone
a woman painting a canvas
a man cooking in a kitchen
a person washing dishes
a person sweeping the floor
a person reading a book in bed
a person typing on a laptop
a person talking on the phone
a person writing by hand
a person taking a photograph
a person fishing from a pier
a person planting a tree
a person carrying a heavy box
a person pushing a stroller
a person in a wheelchair crossing the street
a person with a prosthetic leg running
a person using sign language
a person hailing a taxi
a person waving goodbye
a person pointing at something
a person giving a thumbs up
a person covering their face
a person with their arms crossed
a person jumping in the air
a person sitting cross-legged
a person kneeling
a person lying on the grass
a person standing on a mountain top
a lone figure on an empty beach
a silhouette of a person at sunset
a large crowd seen from above
an empty chair where a person should be
twins side by side
identical triplets
a bride and groom
a graduation ceremony with caps in the air
a soldier saluting
a referee showing a red card
a man in a suit and tie
a woman in an evening gown
a person in pyjamas
a person in a swimsuit
a person wearing a costume
a person dressed as a superhero
a person in a Halloween mask
a person with face paint
a person with a painted face at a football match
a person with a sunburn
a person with a bandaged arm
a person wearing a neck brace
a pregnant woman
a bald man
a woman with long silver hair
a man with a ponytail
a boy with a missing front tooth
a girl with pigtails
a man with tattoos covering his arms
a woman with many piercings
a person wearing a cowboy hat
a person wearing a beanie
a person wearing headphones
a person wearing a helmet
a person wearing a life jacket"""

# ---------------------------------------------------------------- places and geography
COUNTRIES = """Japan, China, South Korea, India, Nepal, Bhutan, Thailand, Vietnam, Cambodia, Indonesia, Malaysia,
the Philippines, Sri Lanka, Pakistan, Afghanistan, Iran, Iraq, Turkey, Israel, Jordan, Lebanon, Saudi Arabia,
the United Arab Emirates, Oman, Yemen, Egypt, Morocco, Algeria, Tunisia, Libya, Ethiopia, Kenya, Tanzania,
Uganda, Rwanda, Nigeria, Ghana, Senegal, Mali, Niger, Cameroon, the Congo, Angola, Namibia, Botswana,
Zimbabwe, Zambia, Mozambique, Madagascar, South Africa, Russia, Ukraine, Poland, Germany, France, Spain,
Portugal, Italy, Greece, Croatia, Serbia, Romania, Hungary, Austria, Switzerland, the Netherlands, Belgium,
Denmark, Sweden, Norway, Finland, Iceland, Ireland, Scotland, England, Wales, the Czech Republic, Slovenia,
Albania, Bulgaria, Georgia, Armenia, Kazakhstan, Uzbekistan, Mongolia, Canada, the United States, Mexico,
Guatemala, Costa Rica, Panama, Cuba, Jamaica, Haiti, Colombia, Venezuela, Ecuador, Peru, Bolivia, Brazil,
Paraguay, Uruguay, Argentina, Chile, Australia, New Zealand, Fiji, Papua New Guinea, Samoa, Greenland,
Alaska, Hawaii, Tibet, Siberia, Patagonia, the Maldives, Bali, Sicily,
Sardinia, Crete, Corsica, Tasmania, Borneo, Sumatra, Zanzibar, Cyprus, Malta, Luxembourg, Estonia, Latvia,
Lithuania, Belarus, Moldova, Slovakia, Montenegro, North Macedonia, Bosnia, Kosovo, Laos, Myanmar,
Bangladesh, Kyrgyzstan, Tajikistan, Azerbaijan, Qatar, Kuwait, Bahrain, Sudan, Somalia, Eritrea, Chad,
Burkina Faso, Ivory Coast, Liberia, Sierra Leone, Guinea, Gabon, Malawi, Lesotho, Eswatini, Mauritius,
the Seychelles, Honduras, Nicaragua, El Salvador, Belize, the Dominican Republic, Puerto Rico,
the Bahamas, Barbados, Trinidad, Guyana, Suriname, Tonga, Vanuatu, the Solomon Islands, the Faroe Islands"""

COUNTRY_TEMPLATES = [
    "a photo taken in {x}",
    "a landscape in {x}",
    "a street scene in {x}",
    "a village in {x}",
    "a typical house in {x}",
    "a market in {x}",
    "the countryside of {x}",
    "a road trip through {x}",
    "a traditional festival in {x}",
    "a city in {x}",
]

CITIES = """Tokyo, Kyoto, Osaka, Beijing, Shanghai, Hong Kong, Seoul, Taipei, Bangkok, Hanoi, Ho Chi Minh City,
Singapore, Kuala Lumpur, Jakarta, Manila, Mumbai, Delhi, Kolkata, Varanasi, Jaipur, Kathmandu, Dubai,
Abu Dhabi, Doha, Istanbul, Jerusalem, Tel Aviv, Cairo, Marrakesh, Casablanca, Fez, Nairobi, Lagos, Accra,
Dakar, Cape Town, Johannesburg, Addis Ababa, Moscow, Saint Petersburg, Kyiv, Warsaw, Krakow, Prague,
Vienna, Budapest, Berlin, Munich, Hamburg, Amsterdam, Brussels, Paris, Marseille, Lyon, Nice, London,
Edinburgh, Dublin, Madrid, Barcelona, Seville, Lisbon, Porto, Rome, Venice, Florence, Milan, Naples,
Athens, Santorini, Dubrovnik, Stockholm, Oslo, Copenhagen, Helsinki, Reykjavik, Zurich, Geneva,
New York, Los Angeles, San Francisco, Chicago, Miami, New Orleans, Las Vegas, Seattle, Boston,
Washington, Toronto, Vancouver, Montreal, Mexico City, Havana, Bogotá, Lima, Cusco, Rio de Janeiro,
São Paulo, Buenos Aires, Santiago, La Paz, Sydney, Melbourne, Auckland, Wellington, Honolulu, Anchorage,
Ulaanbaatar, Tbilisi, Baku, Tehran, Karachi, Lahore, Dhaka, Colombo, Yangon, Phnom Penh, Vientiane,
Zanzibar City, Timbuktu, Tunis, Algiers, Beirut, Amman, Muscat, Riyadh, Bruges, Salzburg, Tallinn, Riga,
Vilnius, Bergen, Valletta, Granada, Bordeaux, Strasbourg, Bologna, Palermo, Sarajevo, Belgrade, Bucharest,
Sofia, Ljubljana, Zagreb, Bratislava, Minsk, Quebec City, Austin, Denver, Philadelphia, Detroit, Nashville,
San Diego, Portland, Cartagena, Quito, Montevideo, Valparaíso, Salvador, Brasília, Perth, Brisbane,
Queenstown, Nuuk, Lhasa, Chengdu, Xi'an, Hiroshima, Nara, Busan, Chiang Mai, Hoi An, Luang Prabang,
Goa, Udaipur, Petra, Luxor, Alexandria, Essaouira, Windhoek, Kigali, Kampala, Dar es Salaam, Mombasa"""

CITY_TEMPLATES = [
    "a street in {x}",
    "the skyline of {x}",
    "a photo taken in {x}",
    "a busy square in {x}",
    "{x} at night",
    "an aerial view of {x}",
    "old buildings in {x}",
    "a view over the rooftops of {x}",
    "a tram in {x}",
    "a narrow alley in {x}",
]

LANDMARKS = """the Eiffel Tower, the Statue of Liberty, the Great Wall of China, the Taj Mahal, the Colosseum,
the pyramids of Giza, the Sphinx, Machu Picchu, Stonehenge, the Leaning Tower of Pisa, Big Ben,
the Tower Bridge, the Golden Gate Bridge, the Brooklyn Bridge, the Sydney Opera House, Mount Fuji,
Mount Everest, Kilimanjaro, the Matterhorn, the Grand Canyon, Niagara Falls, Victoria Falls, Iguazu Falls,
Uluru, Angkor Wat, the Forbidden City, Petra's Treasury, Christ the Redeemer, Chichen Itza, the Acropolis,
the Parthenon, the Sagrada Familia, the Alhambra, Neuschwanstein Castle, the Kremlin, Red Square,
Saint Basil's Cathedral, the Brandenburg Gate, the Arc de Triomphe, Notre-Dame de Paris, the Louvre pyramid,
the Vatican, Saint Peter's Basilica, the Burj Khalifa, the Empire State Building, the Space Needle,
the Hollywood sign, Mount Rushmore, the Lincoln Memorial, the White House, the Capitol building,
Times Square, Central Park, the Las Vegas Strip, the Gateway Arch, Yellowstone geysers, Yosemite Valley,
Monument Valley, Ha Long Bay, Borobudur, the Potala Palace, the Blue Mosque, Hagia Sophia, Cappadocia,
Mont Saint-Michel, the Cliffs of Moher, the Giant's Causeway, Edinburgh Castle, the Atomium,
the windmills of Kinderdijk, the canals of Venice, the Rialto Bridge, the Trevi Fountain, the Amalfi Coast,
the Dead Sea, the Western Wall, the Dome of the Rock, Table Mountain, the Serengeti plains,
the Okavango Delta, the Great Barrier Reef, Milford Sound, the Northern Lights over Lapland,
the fjords of Norway, the Dolomites, Lake Como, Lake Titicaca, the Salar de Uyuni salt flats,
the Atacama Desert, Torres del Paine, the Amazon river, the Nile river, the Ganges at dawn,
the Yangtze river, the Mekong delta, the rice terraces of Banaue, the Bamiyan valley, Easter Island statues,
the Moai, the Sahara dunes, the Gobi desert, the Namib desert, Death Valley, the Rocky Mountains,
the Andes, the Himalayas, the Alps, the Pyrenees, the Scottish Highlands, Lake Baikal, the Caspian Sea,
the Dead Sea shore, the Panama Canal, the Suez Canal, the Hoover Dam, the Three Gorges Dam"""

LANDMARK_TEMPLATES = [
    "a photo of {x}",
    "tourists visiting {x}",
    "{x} at sunset",
    "a postcard of {x}",
    "{x} seen from a distance",
]

US_STATES = """Texas, California, Florida, Arizona, Colorado, Utah, Montana, Maine, Vermont, Oregon, Nevada,
New Mexico, Louisiana, Kansas, Iowa, Wisconsin, Minnesota, Michigan, Georgia, Tennessee, Kentucky,
Wyoming, Idaho, North Dakota, Oklahoma, Arkansas, Mississippi, Alabama, the Carolinas, Virginia,
New England, the Midwest, the Pacific Northwest, the Deep South, Appalachia, the Great Plains"""

BIOMES = """a tropical rainforest, a pine forest, a birch forest, a bamboo forest, a redwood forest,
a mangrove swamp, a savanna with acacia trees, a sandy desert, a rocky desert, a salt flat, a tundra,
a glacier, an ice cap, a snowy mountain range, a volcano, a lava field, a hot spring, a geyser,
a canyon, a gorge, a mesa, a cave, a limestone cliff, a coral reef, a lagoon, a fjord, a river delta,
a marsh, a bog, a wetland, a prairie, a steppe, a meadow full of wildflowers, rolling green hills,
a valley with a river, a waterfall in the jungle, a mountain lake, a frozen lake, a sandy beach,
a pebble beach, a rocky coastline, a tropical island, an atoll, sand dunes, an oasis, a badlands landscape,
a vineyard on a hillside, rice paddies, a tea plantation, wheat fields, a lavender field, an olive grove,
an orchard, a sunflower field, a tulip field, a cornfield, a cotton field, a palm grove, a cactus desert"""

BIOME_TEMPLATES = [
    "{x}",
    "a landscape with {x}",
    "a photo of {x}",
    "an aerial photo of {x}",
]

PLACE_SENTENCES = """a tropical beach with palm trees
a snowy village in the mountains
a fishing village with colourful boats
a desert town with mud-brick houses
a Mediterranean harbour town
a Scandinavian wooden church
an Alpine chalet
a Japanese temple garden
a Chinese pagoda
a Buddhist stupa with prayer flags
a mosque with tall minarets
a Gothic cathedral
an Orthodox church with onion domes
a Hindu temple covered in carvings
a Greek island with white houses and blue domes
an English country cottage
a Dutch canal lined with houses
a Parisian café terrace
an Italian piazza
a Spanish plaza with orange trees
a Moroccan souk
a Middle Eastern bazaar
an African savanna at dusk
a Maasai village
a Bedouin tent in the desert
an igloo in the Arctic
a yurt on the Mongolian steppe
a log cabin in the woods
a ranch in the American West
a farmhouse in the Midwest
a Southern plantation house
a New England fishing town
a Caribbean beach bar
a Brazilian favela on a hillside
a Mexican town with painted houses
an Andean village with llamas
a Himalayan monastery
a Tibetan prayer wheel
a Japanese street with lanterns
a Korean palace
a Thai floating market
a Vietnamese rice field with workers in conical hats
an Indian street full of rickshaws
a ghat on an Indian river
an Australian outback road
a New Zealand sheep farm
a Pacific island village
a Hawaiian volcano
an Icelandic waterfall
a Norwegian fjord with a small village
a Scottish castle ruin
an Irish stone wall in green fields
a Swiss mountain railway
a German Christmas market
a Russian winter street
a Polish old town square
a Czech castle above a river
a Turkish bazaar with lamps
a Persian garden
an Egyptian temple with hieroglyphs
a Roman ruin
a Mayan pyramid in the jungle
an Inca stone wall
a Native American pueblo
a Canadian lake with canoes
an Arctic research station
an Antarctic ice shelf
a photo taken in northern Europe
a photo taken in southeast Asia
a photo taken in South America
a photo taken in central Africa
a photo taken in the Middle East
a photo taken in the Caribbean
a photo taken in the Pacific islands
a photo taken in eastern Europe
a photo taken in the Arctic
a photo taken in the tropics
a photo taken in a temperate forest
a photo taken in a northern country in winter
a photo taken near the equator
a photo taken at high altitude
a photo taken by the sea
a photo taken on a mountain
a photo taken in a big city
a photo taken in a small town
a photo taken in the countryside
a photo taken in the suburbs"""

# ---------------------------------------------------------------- scenes
ROOMS = """kitchen, living room, bedroom, bathroom, dining room, attic, basement, garage, home office,
nursery, laundry room, walk-in closet, hotel room, hotel lobby, office, open-plan office, meeting room,
classroom, lecture hall, school corridor, library, museum gallery, art studio, recording studio,
television studio, laboratory, hospital ward, operating room, dentist's office, waiting room, pharmacy,
supermarket, grocery store, bakery, butcher shop, bookshop, clothing store, shoe shop, toy shop,
hardware store, flower shop, jewellery store, antique shop, pawn shop, thrift store, shopping mall,
restaurant, fast-food restaurant, café, bar, pub, nightclub, concert hall, theatre, cinema, bowling alley,
casino, gym, swimming pool, sauna, spa, locker room, ice rink, dance studio, church, temple,
mosque, courtroom, prison cell, police station, fire station, post office, bank,
train station, subway station, airport terminal, bus station, ferry terminal, warehouse, factory floor,
workshop, server room, control room, greenhouse, barn, stable, farm shed, wine cellar, brewery,
laundromat, hair salon, tattoo parlour, arcade, chapel, auditorium, gymnasium, cafeteria, dormitory"""

ROOM_TEMPLATES = [
    "inside {a}",
    "an empty {x}",
    "a crowded {x}",
    "{a} at night",
    "a messy {x}",
    "a modern {x}",
    "an old-fashioned {x}",
    "the interior of {a}",
]

OUTDOOR = """parking lot, playground, city park, botanical garden, cemetery, harbour, marina, pier, boardwalk,
lighthouse, train platform, railway yard, highway, motorway interchange, country road, dirt track,
roundabout, pedestrian crossing, bridge over a river, tunnel entrance, construction site, junkyard,
scrapyard, farm, vineyard, orchard, campsite, ski resort, golf course, football stadium, tennis court,
basketball court, baseball field, racetrack, skate park, outdoor market, night market, flea market,
street food stall, petrol station, car wash, drive-in cinema, amusement park, funfair, water park,
zoo, aquarium entrance, city square, town hall, palace courtyard, castle wall, medieval street,
industrial zone, power plant, oil refinery, container port, shipyard, airport runway, military base,
refugee camp, slum, suburban street, cul-de-sac, apartment block, skyscraper district, rooftop terrace,
back alley, underpass, subway entrance, bus stop, taxi rank, bicycle lane, canal towpath, riverbank,
lakeside, mountain pass, hiking trail, forest path, ski slope, beach promenade, fishing dock, quarry,
mine entrance, dam, reservoir, windmill farm, solar farm, village green, school playground, university campus"""

OUTDOOR_TEMPLATES = [
    "a photo of {a}",
    "{a} in the rain",
    "an empty {x} early in the morning",
    "a busy {x}",
    "{a} seen from above",
    "{a} at dusk",
    "an abandoned {x}",
]

SCENE_SENTENCES = """a traffic jam on a motorway
a car accident on a wet road
a flooded street
a street after an earthquake
a burning building
firefighters putting out a fire
a city street during a parade
a street festival with lanterns
fireworks over a city
a birthday party with balloons
a wedding reception
a funeral procession
a graduation party
a children's party with a cake
a picnic in the park
a barbecue in a back garden
a family dinner at a long table
a business meeting around a table
a job interview
a classroom with students taking an exam
a science fair
a football match in a full stadium
a marathon with hundreds of runners
a boxing match
a tennis final
a horse race
a car race
a cycling race through the mountains
a rock concert with stage lights
an orchestra performing
a ballet performance
a theatre play on stage
a circus tent with acrobats
a carnival with masks
a protest march
an election rally
a press conference
a court hearing
a hospital emergency room
an ambulance with flashing lights
a police car at a crime scene
a military parade
soldiers in a trench
a refugee boat at sea
a busy airport check-in
a plane taking off
passengers boarding a train
a ferry crossing a bay
a cargo ship being unloaded
a queue outside a shop
a crowded beach in summer
a ski lift full of skiers
an empty beach in winter
a deserted street at night
a ghost town
an abandoned factory
an overgrown ruin
a half-built house
a house being demolished
a messy teenager's bedroom
a tidy minimalist living room
a cluttered desk
a dinner table set for guests
a kitchen after cooking
a fridge full of food
an empty fridge
a bookshelf full of books
a cosy reading nook
a fireplace with stockings
a Christmas tree with presents
a Halloween pumpkin on a porch
an Easter egg hunt
a Diwali celebration with lamps
a Chinese New Year dragon dance
a Ramadan evening meal
a Hanukkah menorah
a Day of the Dead altar
a harvest festival
a snowball fight
building a snowman
a sandcastle on the beach
children flying kites
a game of chess in the park
a card game at a kitchen table
a video game on a big screen
a movie night on a sofa
a garden party
a vegetable garden
a backyard swimming pool
a lawn being mowed
leaves being raked
a car being repaired
a bicycle repair shop
a laundry line with clothes drying
a street vendor selling fruit
a farmer's market stall
a queue at a food truck
a chef plating a dish
a restaurant kitchen during service
a sushi bar
a wine tasting
a coffee shop with people working on laptops
a library reading room
a study group in a library
a lab with test tubes
a hospital bed
a dentist's chair
a baby's crib
a nursing home
a kindergarten classroom
a school bus
a school cafeteria
an office cubicle
a trading floor
a factory assembly line
robots in a car factory
a warehouse with tall shelves
a post office sorting room
a newspaper printing press
a recording session
a radio studio
a film set with cameras
a photo shoot in a studio
a fashion show
an art exhibition opening
a museum with dinosaur skeletons
a planetarium
a space launch
a control room with many screens
a data centre
a power station at night
an oil rig at sea
a mine shaft
a quarry with heavy machinery
a logging truck
a tractor ploughing a field
a combine harvester
a fishing trawler
a lighthouse in a storm
a shipwreck on a beach
a sunken ship underwater
a diver exploring a reef"""

# ---------------------------------------------------------------- weather and light
WEATHER = """a sunny day with a clear blue sky
a cloudy, overcast day
dark storm clouds gathering
a thunderstorm with lightning
a bolt of lightning over the sea
heavy rain falling on a street
light drizzle on a window
raindrops on a car windscreen
a rainbow after the rain
a double rainbow
thick fog in a valley
mist rising from a lake
a foggy morning in the city
a snowstorm
gently falling snow
a blizzard in the mountains
fresh snow covering everything
icicles hanging from a roof
frost on a window pane
a frozen landscape
hail on the ground
a sandstorm in the desert
a tornado over the plains
a hurricane hitting the coast
strong wind bending the trees
a calm, windless day
a heat wave with shimmering air
a drought with cracked earth
a flood covering fields
autumn leaves blowing in the wind
a spring day with blossoms
a hot summer afternoon
a cold winter morning
sunrise over the mountains
sunset over the ocean
the golden hour
the blue hour after sunset
twilight in a city
a starry night sky
the Milky Way
a full moon
a crescent moon
a solar eclipse
a lunar eclipse
the northern lights
a night sky with a comet
clouds lit by the setting sun
a pink and orange sky
sunbeams through the clouds
sunlight through the trees
dappled light in a forest
harsh midday sun
long shadows in the evening
a silhouette against a bright sky
backlit leaves
a scene lit by candlelight
a room lit by a single lamp
neon lights reflected on wet streets
street lights at night
car headlights in the dark
a city lit up at night
a dark scene with little light
bright, even studio lighting
soft window light
a spotlight on a stage
fluorescent office lighting
warm yellow light
cold blue light
a scene in deep shadow
light and shadow stripes from blinds
reflections on a calm lake
sun glare on water
a sunlit meadow
a hazy, smoggy city
smoke from a wildfire
an orange sky from wildfires
volcanic ash in the air
dust in a beam of light
steam rising from a cup
fog lights in the mist
a grey rainy afternoon
puddles after the rain
a wet pavement reflecting lights
a cloudless desert sky
cumulus clouds
cirrus clouds high in the sky
a mackerel sky
storm clouds over a wheat field
a rain shower seen in the distance
the first snow of the year
melting snow in spring
a frosty morning meadow
dew on grass in the morning
a humid tropical day
a monsoon downpour"""

# ---------------------------------------------------------------- colours
COLOURS = """red, crimson, scarlet, maroon, pink, hot pink, magenta, purple, violet, lavender, indigo, blue,
navy blue, sky blue, turquoise, teal, cyan, aqua, green, lime green, emerald green, olive green,
forest green, mint green, yellow, lemon yellow, mustard yellow, gold, orange, amber, peach, coral,
salmon pink, brown, chocolate brown, tan, beige, cream, ivory, white, off-white, silver, grey,
charcoal grey, black, bronze, copper, rust red, burgundy"""

COLOUR_TEMPLATES = [
    "an image dominated by {x}",
    "{a} background",
    "a wall painted {x}",
    "the colour {x}",
    "{a} object",
]

COLOUR_OBJECTS = """car, door, umbrella, balloon, dress, bicycle, house, boat, flower, apple, shirt, hat,
chair, bus, tractor, mug, scarf, kite, bird, truck"""

COLOUR_SENTENCES = """a black and white striped shirt
a red and white checked tablecloth
a blue and yellow flag
green and gold autumn leaves
a rainbow of colours
a colourful painted wall
pastel colours
neon colours
muted, earthy tones
a monochrome image
a mostly grey scene
vivid saturated colours
faded, washed-out colours
a black background with a bright subject
an all-white room
a dark blue night scene
warm orange tones
cool blue tones
a pink sunset sky
a green landscape
a red sports car
a yellow taxi
a red double-decker bus
a blue front door
a white picket fence
a red barn
a black cat on a white sofa
a white dog on green grass
an orange on a blue plate
a purple field of lavender
golden wheat under a blue sky
a turquoise sea
a red phone box
a yellow school bus
a green traffic light
a red traffic light
a pink flamingo in blue water
a multicoloured umbrella
colourful balloons
colourful buildings
colourful fruit at a market
colourful powder at a festival
colourful fish
a bright red lipstick
red hair
blue eyes
green eyes
a rainbow flag
a gradient from blue to purple
a black-and-white photo of a city"""

# ---------------------------------------------------------------- textures and materials
MATERIALS = """wood, polished wood, rough bark, marble, granite, concrete, brick, cobblestones, sand, gravel,
clay, mud, rusty metal, brushed steel, shiny chrome, copper sheeting, gold leaf, glass, frosted glass,
stained glass, cracked glass, plastic, rubber, leather, suede, denim, wool, knitted wool, silk, velvet,
lace, linen, cotton, burlap, fur, feathers, scales, paper, crumpled paper, cardboard, cork, bamboo, wicker,
straw, ice, snow, water droplets, foam, bubbles, moss, lichen, tree rings, peeling paint, cracked paint,
plaster, ceramic tiles, porcelain, terracotta, slate, asphalt, rusted iron, corrugated iron, chain mail,
carbon fibre, honeycomb, sponge, wax, soap suds, chocolate, bread crust, salt crystals, sugar cubes"""

MATERIAL_TEMPLATES = [
    "a close-up texture of {x}",
    "a detailed photo of {x}",
    "the texture of {x}",
    "a background of {x}",
]

TEXTURE_SENTENCES = """a rough, uneven surface
a smooth, glossy surface
a soft, fluffy texture
a bumpy texture
a shiny metallic surface
a matte surface
a transparent object
a translucent material
a reflective surface
a wrinkled fabric
a crumpled piece of paper
a cracked dry riverbed
peeling bark on a tree
the grain of a wooden plank
a wet, slippery rock
a furry animal coat
a spiky cactus
a soft feather
a woven basket texture
a knitted sweater close-up
a pile of sand
pebbles on a beach
rust spreading on metal
weathered wood
a frayed rope
a scratched surface
a dusty shelf
a sticky surface
a hairy texture
a scaly skin
a glittering surface
a sparkling diamond
a bubbly liquid
a slimy surface
a grainy concrete wall
a polished marble floor
a mosaic floor
a tiled bathroom wall
a brick wall covered in ivy
a stone wall
a wooden fence
a chain-link fence
a barbed wire fence"""

# ---------------------------------------------------------------- shapes and patterns
SHAPES = """a circle, a perfect circle, a square, a rectangle, a triangle, a triangular sign, a hexagon,
a pentagon, an octagon, an oval, a star shape, a heart shape, a crescent shape, a diamond shape, a cross,
an arrow, a spiral, a zigzag line, a wavy line, a straight line, a curved line, parallel lines,
a grid of squares, concentric circles, a sphere, a cube, a pyramid shape, a cylinder, a cone,
a ring shape, a dome, an arch, a row of arches, a spiral staircase, a round window, a square window,
an arched doorway, a round table, a square box, a triangular roof, a circular building, a curved bridge,
a symmetrical building, an asymmetrical composition, a geometric pattern, an abstract shape,
an irregular shape, a jagged edge, a sharp point, a rounded corner, a hollow tube, a coiled spring,
a knot, a maze, a labyrinth pattern, a fractal pattern, a tessellation, a honeycomb pattern,
polka dots, stripes, vertical stripes, horizontal stripes, diagonal stripes, a checkerboard pattern,
a plaid pattern, a tartan pattern, a floral pattern, a paisley pattern, a leopard print, a zebra print,
a camouflage pattern, a herringbone pattern, a chevron pattern, a houndstooth pattern, a repeating pattern,
a symmetrical pattern, a kaleidoscope pattern, a mandala, a starburst, radiating lines, a silhouette shape,
an outline drawing of a shape, a stack of cubes, a tower of blocks, a pile of spheres"""

# ---------------------------------------------------------------- counts and quantities
COUNT_NOUNS = [
    ("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"), ("apple", "apples"),
    ("banana", "bananas"), ("car", "cars"), ("boat", "boats"), ("person", "people"), ("child", "children"),
    ("chair", "chairs"), ("cup", "cups"), ("candle", "candles"), ("book", "books"), ("tree", "trees"),
    ("flower", "flowers"), ("egg", "eggs"), ("coin", "coins"), ("key", "keys"), ("ball", "balls"),
    ("duck", "ducks"), ("cow", "cows"), ("sheep", "sheep"), ("fish", "fish"), ("bottle", "bottles"),
    ("house", "houses"), ("window", "windows"), ("balloon", "balloons"), ("shoe", "shoes"), ("star", "stars"),
]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]

COUNT_SENTENCES = """a single apple on a table
one lonely tree in a field
one person standing alone
a single candle in the dark
a pair of shoes
a pair of socks
a couple of birds on a branch
a few people in a large room
several cars in a parking lot
many birds in the sky
hundreds of people in a square
thousands of lights in a city
a crowd of people
a huge crowd at a festival
a handful of coins
a pile of coins
a stack of books
a stack of plates
a heap of clothes
a mountain of rubbish
a row of houses
a line of people
a row of trees along a road
a long row of bicycles
a shelf of identical jars
a basket full of apples
a bowl full of cherries
a box of chocolates
a dozen eggs in a carton
a bunch of grapes
a bunch of flowers
a bouquet of roses
a bundle of sticks
a swarm of bees
a flock of birds
a herd of cattle
a pack of dogs
a school of fish
a litter of puppies
a team of players
an orchestra of musicians
a group of three friends
a family of four
a couple and their dog
two people talking
three children playing
four wheels
five fingers
a hand showing three fingers
ten candles on a cake
a clock showing three o'clock
an empty room
an empty plate
an empty street
a half-empty glass
a full glass of water
a nearly full parking lot
a single object in the middle of the image
many small objects scattered on a table
a cluttered scene with many objects
a sparse scene with few objects
a few scattered leaves
a lot of snow
a little bit of water
a huge pile of sand
a tiny amount of food on a plate
a large amount of money
a long queue of cars
rows and rows of seats
dozens of boats in a harbour
countless stars
a pair of twins
a trio of musicians
a quartet of singers"""

# ---------------------------------------------------------------- text and letters
LETTER_SENTENCES = """a sign that says STOP
a sign that says OPEN
a sign that says CLOSED
a sign that says EXIT
a sign that says SALE
a sign that says NO PARKING
a sign that says WELCOME
a sign that says DANGER
a sign that says HOTEL
a sign that says TAXI
a sign that says POLICE
a sign that says PHARMACY
a sign that says FOR RENT
a sign that says COFFEE
a shop sign with large letters
a neon sign with glowing words
a billboard with advertising text
a road sign with a town name
a street name sign
a motorway sign with directions
a warning sign with a symbol
a handwritten note
a handwritten letter
a shopping list
a page of a printed book
an open book with text
a newspaper front page
a magazine cover
a page of a dictionary
a menu on a chalkboard
a restaurant menu
a receipt
a ticket with printed text
a business card
a label on a bottle
a product label with small print
a barcode
a QR code
a licence plate
a number plate on a car
a calendar page
a clock face with numbers
a digital display with numbers
a scoreboard
a timetable board at a station
a computer screen full of code
a text message on a phone screen
a keyboard with letters
a typewriter with paper
a blackboard covered in equations
a whiteboard with notes
a page of sheet music
a map with place names
a poster with a slogan
a protest sign
a book cover with a title
a movie poster
a comic strip with speech bubbles
a graffiti tag on a wall
graffiti lettering
calligraphy
Chinese characters
Japanese writing
Arabic script
Hebrew letters
Cyrillic letters
Greek letters
Hindi writing in Devanagari
Korean hangul
Latin inscription on stone
hieroglyphs carved in stone
runes carved in wood
Braille dots
Morse code
a mathematical formula
a word written in the sand
letters written in the snow
a name carved into a tree
a tattoo of a word
a t-shirt with writing on it
a mug with a printed quote
a typed document
a form to fill in
a signature
a stamp on a document
a price tag
a handwritten price sign at a market
a label maker strip
alphabet blocks for children
fridge magnets in the shape of letters
a crossword puzzle
a word search puzzle
a Scrabble board
a page with a single word
a large capital letter
lowercase letters
an old manuscript
a medieval illuminated letter
a typewritten page
a text in a foreign language
a blurry text that cannot be read
a logo with a company name
a brand name on a product
a jersey with a number on the back
a house number on a door
a road marking that says SLOW
a painted number on a parking space
an address on an envelope"""

LETTERS = [f"the letter {c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
DIGITS = [f"the number {n}" for n in range(10)] + [f"the number {n}" for n in (13, 21, 42, 100, 1000, 2024)]

# ---------------------------------------------------------------- art styles and media
ART_STYLES = """an oil painting, a watercolour painting, an acrylic painting, a pencil sketch, a charcoal drawing,
an ink drawing, a pen and ink illustration, a pastel drawing, a crayon drawing, a child's drawing,
a digital painting, a vector illustration, a flat design illustration, a cartoon, a comic book panel,
a manga drawing, an anime still, a pixel art image, a low-poly 3D render, a photorealistic 3D render,
a clay model, a claymation still, a paper cut-out, an origami model, a collage, a mosaic,
a stained glass window, a fresco, a cave painting, an ancient Greek vase painting, a Byzantine icon,
a medieval manuscript illustration, a Renaissance painting, a Baroque painting, a Rococo painting,
a neoclassical painting, a romantic landscape painting, an impressionist painting, a pointillist painting,
a post-impressionist painting, an expressionist painting, a cubist painting, a surrealist painting,
an abstract expressionist painting, a pop art print, a minimalist artwork, an art deco poster,
an art nouveau illustration, a Bauhaus design, a constructivist poster, a propaganda poster,
a vintage travel poster, a retro 1980s graphic, a vaporwave image, a psychedelic poster,
a Japanese woodblock print, an ukiyo-e print, a Chinese ink wash painting, a Persian miniature,
an Aboriginal dot painting, a Mexican folk art painting, an Indian Madhubani painting,
an African tribal mask, a Celtic knot design, an Islamic geometric pattern, a tapestry,
an embroidery, a cross-stitch pattern, a quilt pattern, a linocut print, a woodcut, an etching,
an engraving, a lithograph, a screen print, a stencil graffiti, a street art mural, a chalk drawing on
the pavement, a sand painting, an ice sculpture, a marble sculpture, a bronze statue, a wooden carving,
a clay pot with painted patterns, a ceramic figurine, a glass sculpture, a wire sculpture,
a kinetic sculpture, an installation artwork, a tattoo design, a henna pattern, a logo design,
an infographic, a technical drawing, a blueprint, an architectural sketch, a botanical illustration,
a scientific diagram, an anatomical drawing, a map illustration, a children's book illustration,
a storybook illustration, a fantasy illustration, a science fiction concept art, a video game screenshot,
a retro video game sprite, a meme image, a clip art image, an emoji, an icon, a doodle, a caricature,
a silhouette artwork, a line drawing, a coloring book page, a sticker, a trading card, a postage stamp design"""

ART_SUBJECTS = """a bowl of fruit, a harbour at sunset, a woman's portrait, a mountain landscape, a city street,
a vase of flowers, a sleeping cat, a horse, a ship at sea, a forest, a dancer, an old man, a village,
a bridge over a river, a lighthouse, a dragon, a castle, a garden, a rainy street, a beach"""

ART_SENTENCES = """a famous painting in a museum
a painting hanging on a wall
a sculpture in a park
a statue of a horseman
an artist's palette with paint
brush strokes visible on a canvas
a drawing on lined paper
a sketch on a napkin
a wall covered in murals
graffiti on a train
a painted ceiling in a church
a mosaic floor in a Roman villa
a hand-painted sign
a poster on a brick wall
a framed photograph
a gallery with white walls
an abstract painting with bold colours
a painting in the style of Van Gogh
a painting in the style of Monet
a painting in the style of Picasso
a painting in the style of Rembrandt
a painting in the style of Vermeer
a painting in the style of Hokusai
a painting in the style of Frida Kahlo
a painting in the style of Dalí
a painting in the style of Klimt
a painting in the style of Mondrian
a painting in the style of Turner
a painting in the style of Warhol
a painting in the style of Edward Hopper
an image in the style of a Pixar film
an image in the style of a Studio Ghibli film
a black and white comic
a noir film still
a still from an old silent film
a frame from a cartoon
a rendering of a futuristic city
a concept sketch of a car
a fashion sketch
a storyboard
a tattoo on someone's back
a chalk drawing of a hopscotch game"""

# ---------------------------------------------------------------- photo properties
PHOTO_PROPERTIES = """a blurry photo
a slightly out-of-focus photo
a photo with motion blur
a sharp, detailed photo
a photo with a shallow depth of field
a photo with a blurred background
a photo where everything is in focus
a tilt-shift photo
a macro photo
an extreme close-up
a wide-angle photo
a fisheye lens photo
a telephoto shot of a distant subject
a panoramic photo
a photo taken from above
a bird's-eye view
an aerial photo taken by a drone
a satellite image
a photo taken from ground level
a low-angle shot looking up
a high-angle shot looking down
a photo taken at eye level
a worm's-eye view
a photo taken through a window
a photo taken through a fence
a photo taken underwater
a photo taken from a moving car
a photo taken from an aeroplane window
a reflection in a mirror
a reflection in a puddle
a mirror selfie
a selfie
a group selfie
a candid snapshot
a posed portrait
a studio portrait with a grey backdrop
a headshot
a full-body shot
a photo with the subject in the centre
a photo with the subject off to one side
a photo with lots of empty space
a tightly cropped photo
a photo with the horizon tilted
an upside-down photo
a mirrored image
a rotated image
a photo with a vignette
an overexposed photo
an underexposed photo
a very dark photo
a very bright photo
a photo with high contrast
a photo with low contrast
a washed-out photo
a high dynamic range photo
a long exposure photo with light trails
a long exposure of a waterfall
star trails in the night sky
a photo taken with flash
a photo with red eyes from the flash
a photo with lens flare
a photo with a light leak
a double exposure
a grainy film photo
a photo with digital noise
a low-resolution image
a pixelated image
a heavily compressed JPEG with artefacts
a photo with a watermark
a photo with a date stamp in the corner
a photo with a caption underneath
a black and white photo
a sepia photo
a photo with a colour filter
a photo with an Instagram filter
a vintage photo from the 1970s
a faded old photograph
a torn old photograph
a polaroid photo
a photo from a disposable camera
a daguerreotype
a cyanotype print
a film negative
a contact sheet
a photo of a photo
a photo of a computer screen
a photo of a television screen
a screenshot
a scanned document
a photocopy
a security camera still
a dashcam frame
a body camera image
a webcam image
a thermal camera image
an infrared photo
a night vision image
an X-ray image
an MRI scan
an ultrasound image
a microscope image of cells
an electron microscope image
a telescope image of a galaxy
a photo of the moon through a telescope
a radar image
a weather map
a heat map
a stock photo
a professional product photo
an amateur holiday snapshot
a real estate photo of a room
a food photo taken from above
a fashion photo
a sports photo frozen in action
a wildlife photo taken from far away
a documentary photo
a photojournalism image
a street photography shot
a wedding photo
a school class photo
an ID photo
a mugshot
a medical photo
a photo with a frame around it
a photo with a white border
a collage of several photos
a split-screen image
a before and after comparison
a photo with text overlay
a cropped face
a photo with a person cut off at the edge
a photo with a finger over the lens
a photo with raindrops on the lens
a photo with a dirty lens
a photo with a scratch on it
a glitchy image
a corrupted image
an image with stripes of colour noise
a photo taken at night without flash
a photo taken in harsh sunlight
a symmetrical composition
a photo following the rule of thirds
a photo with leading lines
a photo framed by a doorway
a minimalist photo
a busy, chaotic photo
a photo with a bokeh background
a square photo
a tall vertical photo
a wide horizontal photo
a photo taken with a smartphone
a photo taken with a professional camera
an image generated by a computer
a rendered image that looks like a photo"""

# ---------------------------------------------------------------- food
FOODS = """a pizza, a hamburger, a hot dog, a sandwich, a salad, a bowl of soup, a bowl of ramen,
a plate of spaghetti, lasagne, sushi, sashimi, dumplings, spring rolls, fried rice, a curry, biryani, tacos,
a burrito, nachos, a quesadilla, paella, risotto, a steak, a roast chicken, fried chicken, fish and chips,
grilled fish, a shrimp cocktail, a lobster dinner, oysters on ice, an omelette, a fried egg, a boiled egg,
a stack of pancakes, waffles, a croissant, a bagel, a baguette, a loaf of bread, toast with butter,
a bowl of porridge, a bowl of cereal, yoghurt with berries, a smoothie, a milkshake, an ice cream cone,
a chocolate cake, a cheesecake, an apple pie, a cupcake, a doughnut, a cookie, macarons, brownies, a muffin,
a cinnamon roll, a bar of chocolate, a lollipop, gummy bears, cotton candy, popcorn, a pretzel,
a bag of crisps, french fries, onion rings, a kebab, falafel, hummus, pita bread, kimchi, bibimbap, pad thai,
a bowl of pho, dim sum, Peking duck, tempura, miso soup, onigiri, a bento box, a cheese platter,
a charcuterie board, a bowl of olives, a jar of pickles, a jar of honey, a jar of jam, peanut butter,
a bowl of rice, a plate of beans, corn on the cob, a baked potato, mashed potatoes, roast vegetables,
a vegetable stir fry, tofu, avocado toast, a glass of milk, a cup of coffee, a cup of tea,
a glass of orange juice, a glass of red wine, a pint of beer, a cocktail with an umbrella,
a bottle of champagne, a can of soda, a glass of water with ice, a mug of hot chocolate"""

FOOD_TEMPLATES = ["{x}", "{x} on a table", "a close-up of {x}", "{x} served in a restaurant", "a photo of {x}"]

FRUIT_VEG = """apple, pear, banana, orange, lemon, lime, grapefruit, strawberry, raspberry, blueberry,
blackberry, cherry, grape, watermelon, melon, pineapple, mango, papaya, kiwi, peach, plum, apricot, fig,
pomegranate, coconut, dragon fruit, lychee, passion fruit, avocado, tomato, cucumber, carrot, potato,
sweet potato, onion, garlic bulb, red pepper, chilli pepper, aubergine, courgette, pumpkin, squash,
broccoli, cauliflower, cabbage, lettuce, spinach leaf, kale, celery, asparagus, green bean, pea pod,
corn cob, mushroom, radish, beetroot, turnip, leek, artichoke, ginger root, walnut, almond, peanut,
chestnut, hazelnut"""

FRUIT_TEMPLATES = [
    "a fresh {x}", "a photo of {a}", "{a} on a chopping board", "a close-up of {a}", "{a} at a market stall",
]

# ---------------------------------------------------------------- vehicles
VEHICLES = """car, sports car, vintage car, electric car, taxi, police car, ambulance, fire engine, pickup truck,
lorry, delivery van, camper van, school bus, double-decker bus, tram, train, steam locomotive,
high-speed train, subway train, freight train, motorcycle, scooter, bicycle, tandem bicycle, tricycle,
unicycle, rickshaw, tuk-tuk, horse-drawn carriage, tractor, bulldozer, excavator, crane, forklift,
cement mixer, tank, jeep, quad bike, snowmobile, go-kart, golf cart, limousine, convertible,
aeroplane, jet airliner, fighter jet, propeller plane, seaplane, helicopter, hot air balloon, glider,
airship, rocket, space shuttle, satellite, sailboat, yacht, speedboat, rowing boat, canoe, kayak, gondola,
ferry, cruise ship, cargo ship, oil tanker, fishing boat, submarine, paddle steamer, raft, jet ski,
hovercraft, cable car, ski lift, escalator, elevator, skateboard, segway"""

VEHICLE_TEMPLATES = [
    "a photo of {a}", "{a} on the road", "an old {x}", "{a} parked outside a house", "{a} moving fast",
    "a toy model of {a}",
]

# ---------------------------------------------------------------- plants
PLANTS = """rose, tulip, daisy, sunflower, lily, orchid, lotus flower, water lily, lavender, poppy, daffodil,
dandelion, cherry blossom, magnolia, hibiscus, jasmine, lilac, peony, carnation, marigold, iris,
chrysanthemum, hydrangea, bluebell, cactus flower, oak tree, maple tree, pine tree, birch tree, willow tree,
palm tree, baobab tree, cypress tree, redwood tree, olive tree, apple tree, bonsai tree, banyan tree,
eucalyptus tree, fern, moss, ivy, bamboo, cactus, aloe vera, succulent, houseplant, venus flytrap,
seaweed, kelp, clover, four-leaf clover, thistle, nettle, holly, mistletoe, pine cone, acorn, seedling,
tree stump, fallen log, hedge, rose bush, vine, grapevine, tall grass, reeds, wheat stalk, rice plant"""

PLANT_TEMPLATES = ["a photo of {a}", "{a} in a garden", "a close-up of {a}", "{a} in the wild", "{a} in spring"]

# ---------------------------------------------------------------- sports and activities
GAMES = """football, basketball, tennis, golf, baseball, cricket, rugby, ice hockey, field hockey, volleyball,
beach volleyball, table tennis, badminton, water polo, polo, bowling, darts, snooker, chess, curling"""
GAME_TEMPLATES = ["people playing {x}", "{a} match", "someone playing {x}", "{x} equipment"]

ACTIVITIES = """swimming, diving, rowing, sailing, surfing, windsurfing, kitesurfing, skiing, snowboarding,
ice skating, cycling, mountain biking, horse riding, rock climbing, mountaineering, hiking, running,
jogging, fishing, kayaking, canoeing, paragliding, skydiving, bungee jumping, scuba diving, snorkelling,
skateboarding, dancing, weightlifting, juggling"""
ACTIVITY_TEMPLATES = ["people {x}", "a photo of {x}", "someone {x} on a sunny day", "a person {x} alone"]

SPORT_SENTENCES = """two boxers in a ring
wrestlers grappling on a mat
a judo throw
a karate kick
two fencers in white suits
an archer drawing a bow
a target with arrows in the centre
a gymnast on the balance beam
a gymnast on the rings
a weightlifter holding a barbell overhead
a yoga class in a studio
a pilates class
a ballet class at the barre
a parkour runner jumping between walls
a BMX rider in the air
a motocross rider on a dirt track
a Formula One car in the pit lane
a horse clearing a fence at a show jumping event
a high jumper over the bar
a long jumper landing in sand
a pole vaulter in mid-air
a javelin thrower
a shot putter
a hurdler clearing a hurdle
a bobsleigh team on the ice track
a figure skater spinning
speed skaters racing
a goalkeeper diving for the ball
a basketball player dunking
a tennis player serving
a golfer swinging a club
a baseball pitcher throwing
a cricket batsman
a rugby scrum
a hockey player on the ice
a volleyball spike
a swimmer doing butterfly stroke
a diver jumping from a high board
a rowing eight on a river
a sailboat race
a surfer inside a wave
a skier on fresh powder
a snowboarder in a half-pipe
a cyclist climbing a mountain road
a jockey winning a race
a climber hanging from a cliff
a runner crossing the finish line
a team celebrating a goal
a trophy being lifted
fans cheering in a stadium
an empty football pitch
a tennis court from above
a golf ball on a tee
a chessboard mid-game
a boxing glove
a referee's whistle
a stopwatch
a gym with treadmills
a climbing wall
a ski jump ramp"""

# ---------------------------------------------------------------- clothing
CLOTHES = """a T-shirt, a hoodie, a sweater, a cardigan, a blazer, a suit, a tuxedo, a dress, an evening gown,
a wedding dress, a skirt, a miniskirt, a pair of jeans, a pair of shorts, leggings, a pair of trousers,
overalls, a jumpsuit, a raincoat, a trench coat, a puffer jacket, a leather jacket, a denim jacket, a fur coat,
a poncho, a cape, a kimono, a sari, a kilt, a dirndl, a hanbok, a qipao, a kaftan, a djellaba, a sarong,
a toga, an apron, a uniform, a lab coat, a bathrobe, pyjamas, a swimsuit, a bikini, a wetsuit, a tracksuit,
a football kit, a tutu, ballet shoes, cowboy boots, wellington boots, flip-flops, slippers, loafers, clogs,
a beret, a beanie, a sombrero, a fedora, a turban, a hijab, a veil, a crown of flowers, a bandana,
a balaclava, a shawl, mittens, suspenders"""

CLOTHES_TEMPLATES = ["a person wearing {x}", "{x} on a hanger", "{x} folded on a bed", "a fashion photo of {x}"]

# ---------------------------------------------------------------- time periods and moods
ERA_SENTENCES = """a photo from the 1920s
a photo from the 1950s
a photo from the 1960s
a photo from the 1980s
a photo from the 1990s
a photo from the early 2000s
a scene from the Victorian era
a scene from ancient Rome
a scene from ancient Egypt
a medieval scene
a scene from the Wild West
a scene from the Second World War
a futuristic scene
a science fiction scene with robots
a post-apocalyptic scene
a fantasy scene with wizards
a fairy tale scene
a prehistoric scene with dinosaurs
a Stone Age cave
a steampunk machine
a cyberpunk city
a retro diner
a retro kitchen
an old computer from the 1980s
a vintage car show
old-fashioned clothes
a modern glass building
a minimalist modern interior
a traditional wooden house
a historic town centre
a peaceful scene
a tense scene
a joyful celebration
a sad scene
a lonely scene
a romantic scene
a scary scene
a spooky haunted house
a dreamy, soft image
a chaotic scene
a mysterious scene in the fog
an energetic scene
a relaxing scene
a cosy scene
a dramatic scene
a nostalgic image
a funny image
a cute image
an eerie empty place
a luxurious interior
a poor neighbourhood
a wealthy neighbourhood
a clean, tidy place
a dirty, polluted place
a dangerous situation
a safe, quiet place
a festive atmosphere
a gloomy atmosphere"""

# ---------------------------------------------------------------- extra hand-written sentences
MISC_SENTENCES = """a cup of coffee with latte art
a steaming bowl of soup on a cold day
a dinner plate with a knife and fork
a breakfast table with croissants and coffee
an open laptop next to a cup of tea
a phone lying face down on a desk
a pile of unopened letters
a vase of wilted flowers
a bowl of fruit on a kitchen counter
keys hanging on a hook
shoes lined up by the door
a coat on a chair
an unmade bed
a bed with white sheets
a bathroom mirror fogged with steam
a toothbrush in a glass
a bathtub full of bubbles
a garden shed full of tools
a bicycle leaning against a wall
a motorbike parked on a pavement
a car covered in snow
a car with a flat tyre
a rusty old car in a field
a truck loaded with hay
a bus full of passengers
a train crossing a bridge
an empty train carriage
a plane in the clouds
a boat tied to a dock
a sailing boat on a calm sea
a canoe on a misty lake
a road stretching to the horizon
a winding mountain road
a dirt road through a forest
a bridge in the fog
a tunnel of trees
a path through a meadow
a staircase going up
an escalator in a mall
a lift with open doors
a revolving door
an open door
a closed door
a locked gate
a window with the curtains drawn
a window with a view of the sea
light coming through a window
a balcony with flower pots
a rooftop garden
a swimming pool on a roof
a fountain in a square
a statue covered in pigeons
a clock tower
a bell tower
a water tower
a radio tower
an electricity pylon
power lines against the sky
a wind turbine on a hill
a factory chimney with smoke
a pile of logs
a woodpile by a cabin
a campfire at night
a tent under the stars
a hammock between two palm trees
footprints in the sand
footprints in the snow
tyre tracks in the mud
a puddle on a path
a stream over rocks
a waterfall into a pool
a rocky shore with crashing waves
a calm sea at dawn
big waves in a storm
a surfer waiting for a wave
a harbour with fishing nets
a lighthouse on a cliff
a beach hut
a pier stretching into the sea
a lifeguard tower
an umbrella on the beach
a sandcastle being washed away
a child with a bucket and spade
seashells on the sand
a message in a bottle
a treasure map
an old key
a compass on a map
a globe on a desk
a candle-lit dinner
a glass of wine by a fireplace
a cup of hot chocolate with marshmallows
a plate of cookies and a glass of milk
a birthday cake with candles
a wedding cake
a loaf of bread on a wooden board
a chef's knife and vegetables
a pot boiling on a stove
spices in a market
a sack of rice
a field of ripe wheat
bales of hay in a field
a tractor in a field at sunset
a scarecrow in a cornfield
a windmill in the Netherlands
a barn with a red roof
a greenhouse full of tomatoes
a garden with a picket fence
a gnome in a garden
a birdbath
a pond with koi fish
a bridge over a koi pond
a zen rock garden
a bamboo grove
a cherry tree in full blossom
a single red leaf
a tree without leaves in winter
a tree covered in snow
a tree struck by lightning
a huge old oak tree
roots of a tree
a mushroom on the forest floor
a fallen tree across a path
a forest fire
a burnt forest
a clear-cut forest
a jungle river
a crocodile-infested river
a boat on the Amazon
a hut on stilts
a treehouse
a sandcastle
a snow fort
an ice hotel
a dog house
a rabbit hutch
a stable door
a horse trough
a well in a village square
a water pump
women carrying water jugs
a child carrying firewood
a market woman with a basket on her head
a man pulling a cart
a bicycle loaded with goods
a crowded minibus
a motorbike carrying a family
a queue for water
a street barber
a shoeshine stand
a newspaper kiosk
a flower stall
a fruit stand
a bakery window
a shop window display
a mannequin in a window
a shopping bag
a credit card
a wallet full of cash
a banknote
a pile of coins
a piggy bank
a stock market chart
a calculator and receipts
a signed contract
a handshake over a desk
a name badge
an ID card
a passport
a boarding pass
a suitcase on a conveyor belt
a hotel key card
a tourist map
a souvenir shop
a postcard rack
a tour bus
a guided tour group
a hiker with a map
a hiker resting on a rock
a trail marker
a summit cairn
a mountain hut
a ski chalet
a cable car over a valley
a snowy mountain peak
a glacier lagoon with icebergs
an iceberg in the sea
a polar research ship
a husky sled team
a reindeer herd
a northern village in winter
a frozen waterfall
a hot spring in the snow
steam rising from a geyser
a volcano erupting
lava flowing into the sea
a crater lake
a desert oasis with palm trees
a camel in front of dunes
a desert highway
a cactus at sunset
a canyon at sunrise
a rock arch
a hoodoo rock formation
a cave with stalactites
an underground river
a cenote
a tropical waterfall
a rainforest canopy
a rope bridge in the jungle
a jungle temple covered in vines
a rice terrace in the mist
a tea picker in a plantation
a coffee farm
a cocoa pod
a vineyard at harvest
grapes being crushed
a wine barrel cellar
a brewery with copper tanks
a distillery
a cheese cellar
a dairy farm
a chicken farm
a fish farm
a beehive frame with honey
a honeycomb
a bowl of honey
a jar of pickles
a spice rack
a tea set
a coffee machine
a vending machine full of drinks
a candy shop
a toy store window
a board game on a table
a jigsaw puzzle half done
a Rubik's cube
a set of building blocks
a model railway
a dollhouse
a rocking horse
a stuffed animal
a child's bedroom with toys
a crib mobile
a pram in a park
a school desk with an apple
a pencil case
a box of crayons
a set of paints
a drawing pinned on a fridge
a family photo on a shelf
a wall of framed pictures
a clock on a mantelpiece
a grandfather clock
a music box
a record collection
a vinyl record spinning
an old radio on a shelf
a jukebox
a piano in a living room
a guitar leaning against a wall
a drum set on a stage
a violinist on a street corner
a choir singing
a marching band
a DJ at a party
a crowd with raised hands at a concert
a stage with empty seats
a red theatre curtain
a cinema screen
a popcorn box
a film reel
a camera on a tripod
a photographer's studio lights
a darkroom
a television showing static
an old television set
a satellite dish on a roof
a mobile phone tower
a tangle of cables
a circuit board
a computer chip
a server rack with blinking lights
a robot arm
a humanoid robot
a drone in the sky
a rocket launch
an astronaut on the moon
the Earth seen from space
a planet with rings
a nebula
a galaxy
the sun
a sunspot
a meteor shower
a telescope dome
a weather balloon
a wind sock at an airfield
an air traffic control tower
a runway at night
a parked plane at a gate
a cockpit view
a passenger looking out of a plane window
clouds seen from above
a parachute in the sky
a hot air balloon festival
a kite festival
a lantern festival
a sky full of paper lanterns
a bonfire at a festival
a torch-lit procession
a candle vigil
a memorial with flowers
a war memorial
a cemetery with crosses
a grave with flowers
a church with a steeple
a church wedding
a mosque courtyard
a temple with incense smoke
prayer beads
a rosary
a prayer mat
a statue of the Buddha
a shrine with offerings
a totem pole
a stone circle
a dolmen
a pyramid
an obelisk
a triumphal arch
a ruined castle
a moat
a drawbridge
a medieval town wall
a knight on horseback
a sword in a stone
a suit of armour in a museum
a museum display case
a dinosaur skeleton
a fossil
a meteorite
a gemstone
a crystal
a geode
gold nuggets
a diamond ring
a pearl necklace
a jewellery box
a crown in a museum
a throne
a palace hall
a ballroom with chandeliers
a grand staircase
a library with a ladder
an old globe
a writing desk with a quill
an inkwell
a wax seal
a scroll
an ancient map
a ship in a bottle
a model ship
a pirate ship
a treasure chest full of gold
a skull and crossbones flag
a parrot on a pirate's shoulder
a castle made of sand
a unicorn
a dragon breathing fire
a mermaid
a fairy
a wizard's hat
a magic wand
a crystal ball
a witch on a broomstick
a haunted castle
a ghost under a sheet
a jack-o'-lantern
a skeleton costume
a vampire
a zombie
an alien
a flying saucer
a superhero in a cape
a robot toy
a spaceship model
a teddy bear picnic
a toy soldier
a paper boat in a puddle
a paper plane
a kite stuck in a tree
a balloon floating away
soap bubbles in the air
a child on a swing
a child on a slide
a merry-go-round
a Ferris wheel
a roller coaster
a haunted house ride
a carousel horse
a clown with balloons
face painting at a fair
a candy floss stall
a hot dog stand
an ice cream van
a lemonade stand
a garage sale
a moving truck
boxes packed for moving
a new house with a sold sign
a house under construction
scaffolding on a building
a crane on a building site
workers in hard hats
a road being repaired
a pothole
a manhole cover
a drain with water flowing
a sewer tunnel
a subway tunnel
a tunnel boring machine
a mine cart
a coal mine
an oil well
a gas flare
a nuclear power plant
cooling towers
a hydroelectric dam
a solar panel on a roof
a wind farm at sea
an electric car charging
a petrol pump
a car dashboard
a speedometer
a steering wheel and dashboard
a car engine
a car interior
a back seat with a child seat
a car boot full of luggage
a roof rack with bicycles
a caravan at a campsite
a camper van by a lake
a road sign for a speed limit
a traffic light at a crossing
a zebra crossing
a cyclist at a red light
a cyclist in the rain
a pedestrian with an umbrella
a bus stop in the rain
a taxi in the rain
a city at rush hour
an empty city at dawn
a street with closed shops
a street with market stalls
a street covered in leaves
a street lined with cherry trees
a canal with houseboats
a river with a towpath
a lock on a canal
a swan on a canal
a rowing team on a river
a dragon boat race
a regatta
a fishing competition
a man fishing on a frozen lake
an ice fishing hut
a frozen river
children skating on a pond
a hockey game on an outdoor rink
a ski jump
a snowplough clearing a road
a gritting lorry
a car stuck in snow
a snowy forest road
a sledge on a hill
a snowman with a carrot nose
a snow angel
a winter coat and boots
a steaming mug in mittened hands"""


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.replace("\n", " ").split(",") if item.strip()]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def build() -> list[str]:
    """All descriptions, de-duplicated (case, punctuation and spacing ignored), in a stable order."""
    lines: list[str] = []
    lines += rotate(_split(OBJECTS), OBJECT_TEMPLATES)
    lines += rotate(_split(OBJECTS)[::7], OBJECT_TEMPLATES, offset=3)
    lines += rotate(_split(ANIMALS), ANIMAL_TEMPLATES)
    lines += rotate(_split(ANIMALS)[::4], ANIMAL_TEMPLATES, offset=4)
    lines += _lines(ANIMAL_SCENES)
    lines += _lines(PEOPLE)
    lines += _split(PROFESSIONS)
    lines += _lines(PEOPLE_SCENES)
    lines += rotate(_split(COUNTRIES), COUNTRY_TEMPLATES)
    lines += rotate(_split(COUNTRIES)[::3], COUNTRY_TEMPLATES, offset=5)
    lines += rotate(_split(CITIES), CITY_TEMPLATES)
    lines += rotate(_split(CITIES)[::4], CITY_TEMPLATES, offset=5)
    lines += rotate(_split(LANDMARKS), LANDMARK_TEMPLATES)
    lines += [f"a landscape in {s}" if i % 2 else f"a small town in {s}" for i, s in enumerate(_split(US_STATES))]
    lines += rotate(_split(BIOMES), BIOME_TEMPLATES)
    lines += _lines(PLACE_SENTENCES)
    lines += rotate(_split(ROOMS), ROOM_TEMPLATES)
    lines += rotate(_split(OUTDOOR), OUTDOOR_TEMPLATES)
    lines += _lines(SCENE_SENTENCES)
    lines += _lines(WEATHER)
    lines += rotate(_split(COLOURS), COLOUR_TEMPLATES)
    colour_list = _split(COLOURS)
    for i, obj in enumerate(_split(COLOUR_OBJECTS)):
        for j in range(3):
            lines.append(a(f"{colour_list[(i * 3 + j * 11) % len(colour_list)]} {obj}"))
    lines += _lines(COLOUR_SENTENCES)
    lines += rotate(_split(MATERIALS), MATERIAL_TEMPLATES)
    lines += _lines(TEXTURE_SENTENCES)
    lines += _split(SHAPES)
    for i, (single, plural) in enumerate(COUNT_NOUNS):
        for j in range(3):
            lines.append(f"{NUMBERS[(i + j * 3) % len(NUMBERS)]} {plural}")
        lines.append(f"exactly one {single}" if i % 2 else f"many {plural}")
    lines += _lines(COUNT_SENTENCES)
    lines += LETTERS + DIGITS + _lines(LETTER_SENTENCES)
    styles, subjects = _split(ART_STYLES), _split(ART_SUBJECTS)
    lines += styles
    for i, style in enumerate(styles[:60]):
        lines.append(f"{style} of {subjects[i % len(subjects)]}")
    lines += _lines(ART_SENTENCES)
    lines += _lines(PHOTO_PROPERTIES)
    lines += rotate(_split(FOODS), FOOD_TEMPLATES)
    lines += rotate(_split(FRUIT_VEG), FRUIT_TEMPLATES)
    lines += rotate(_split(VEHICLES), VEHICLE_TEMPLATES)
    lines += rotate(_split(PLANTS), PLANT_TEMPLATES)
    lines += rotate(_split(GAMES), GAME_TEMPLATES)
    lines += rotate(_split(ACTIVITIES), ACTIVITY_TEMPLATES)
    lines += _lines(SPORT_SENTENCES)
    lines += rotate(_split(CLOTHES), CLOTHES_TEMPLATES)
    lines += _lines(ERA_SENTENCES)
    lines += _lines(MISC_SENTENCES)

    seen: set[str] = set()
    out = []
    for line in lines:
        key = " ".join(re.sub(r"[^\w\s]", " ", line.lower()).split())
        if key not in seen:
            seen.add(key)
            out.append(line)
    return out


def main() -> None:
    lines = build()
    header = (
        "# editclip general description pool: varied image descriptions for TextSpan, one per line.\n"
        "# Written for editclip (scripts/make_general_pool.py). Lines starting with # are comments.\n"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} descriptions -> {OUT}")


if __name__ == "__main__":
    main()
